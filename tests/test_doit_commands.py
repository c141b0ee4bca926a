"""doit's own commands tell the truth about buildgraph's cache, or refuse in one message.

A node is cached when the action cache holds its key; doit's database knows nothing of
that. So forget, -a, info and list --status work from the cache and the plan, and the
commands that only touch doit's database stop, saying what to use instead. None may
leave a stale output behind an exit status of 0.
"""

import pytest
from project import doit, make_project, statuses

pytestmark = pytest.mark.slow

SPECS = """
default: [top]
targets:
  leaf:
    doc: the source, copied
    step: shell
    sources: [src/leaf.txt]
    params: {script: "cat $SRCS > $OUT/leaf.txt"}
    outputs: [leaf.txt]
  top:
    doc: the leaf, joined
    step: concat
    needs: [leaf]
    outputs: [top.txt]
"""


@pytest.fixture
def built(tmp_path):
    root = make_project(tmp_path / "repo", SPECS, {"src/leaf.txt": "one\n"})
    cache = tmp_path / "cache"
    first = doit(root, cache, "top")
    assert first.returncode == 0, first.stderr
    return root, cache


def _refused(done, said: str) -> None:
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("buildgraph: error:") == 1, done.stderr
    assert f"buildgraph: error: {said} is not supported" in done.stderr
    assert "hint:" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout


def test_ignore_is_refused_and_a_changed_input_still_rebuilds(built):
    root, cache = built
    _refused(doit(root, cache, "ignore", "top"), "`doit ignore`")
    (root / "src" / "leaf.txt").write_text("two\n")
    again = doit(root, cache, "top")
    assert again.returncode == 0, again.stderr
    assert statuses(again.stderr) == {"leaf": "built", "top": "built"}
    assert (root / "_out" / "top.txt").read_text() == "two\n"


def test_forget_makes_the_named_nodes_rebuild_and_only_them(built):
    root, cache = built
    forgot = doit(root, cache, "forget", "top")
    assert forgot.returncode == 0, forgot.stderr
    assert forgot.stdout == "forgot top\n"
    again = doit(root, cache, "top")
    assert statuses(again.stderr) == {"leaf": "cached", "top": "built"}


def test_forget_without_a_target_forgets_the_default_goal(built):
    root, cache = built
    forgot = doit(root, cache, "forget")
    assert forgot.returncode == 0, forgot.stderr
    assert "Traceback" not in forgot.stderr
    assert statuses(doit(root, cache).stderr) == {"leaf": "cached", "top": "built"}


@pytest.mark.parametrize("flag", ["-s", "--all"])
def test_forget_with_its_dependencies_or_all_rebuilds_every_node(built, flag):
    root, cache = built
    forgot = doit(root, cache, "forget", flag, *(["top"] if flag == "-s" else []))
    assert forgot.returncode == 0, forgot.stderr
    assert statuses(doit(root, cache, "top").stderr) == {"leaf": "built", "top": "built"}


def test_always_execute_rebuilds_every_node_of_the_goal(built):
    root, cache = built
    for flag in ("-a", "--always-execute"):
        again = doit(root, cache, flag, "top")
        assert again.returncode == 0, again.stderr
        assert statuses(again.stderr) == {"leaf": "built", "top": "built"}
    assert statuses(doit(root, cache, "top").stderr) == {"leaf": "cached", "top": "cached"}


def test_info_and_list_status_answer_from_the_plan(built):
    root, cache = built
    info = doit(root, cache, "info", "top")
    assert info.returncode == 0, info.stderr
    assert "top: the leaf, joined" in info.stdout
    assert "top  cached" in info.stdout
    listed = doit(root, cache, "list", "--status")
    assert listed.returncode == 0, listed.stderr
    assert [line.split()[:2] for line in listed.stdout.splitlines()] == [
        ["U", "leaf"],
        ["U", "top"],
    ]
    (root / "src" / "leaf.txt").write_text("two\n")
    info = doit(root, cache, "info", "top")
    assert info.returncode == 1  # doit's convention: the task would run
    assert "top  would run" in info.stdout
    assert "upstream leaf would run first" in info.stdout
    listed = doit(root, cache, "list", "--status")
    assert [line.split()[0] for line in listed.stdout.splitlines()] == ["R", "R"]


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["ignore", "top"], "`doit ignore`"),
        (["reset-dep"], "`doit reset-dep`"),
        (["dumpdb"], "`doit dumpdb`"),
        (["strace", "top"], "`doit strace`"),
        (["clean", "--forget"], "`doit clean --forget`"),
        (["-s", "top"], "doit -s/--single"),
    ],
)
def test_commands_about_doit_s_database_are_refused(built, args, said):
    root, cache = built
    _refused(doit(root, cache, *args), said)


def test_doit_from_a_subdirectory_says_where_to_run_it_and_writes_nothing(built):
    root, cache = built
    done = doit(root / "targets", cache, "-k", "top", json_log=False)
    assert done.returncode == 2
    assert done.stderr == (
        f"buildgraph: error: doit must be started in the repository root {root}, where"
        f" pyproject.toml makes buildgraph doit's task loader\n  hint: cd {root} && doit ...\n"
    )
    assert not [p for p in root.rglob(".doit*")]


def test_no_doit_database_is_written(built):
    root, cache = built
    assert not [p for p in [*root.rglob("*doit*.db*"), *cache.rglob("*doit*")]]
