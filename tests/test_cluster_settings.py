"""A cluster build's settings and the mistakes that stop it before any node runs: a bad
address, no remote cache to share bytes through, a scheduler that is down (unless the
build may fall back to this machine), a worker running other buildgraph code."""

from __future__ import annotations

import shutil

import pytest
from dask_cluster import WorkerSpec, joined_project, serve_cluster
from project import REPO, doit, statuses
from registry_server import free_port

from buildgraph.engine import cluster, dispatch
from buildgraph.engine.errors import BuildgraphError


@pytest.fixture
def project(tmp_path):
    return joined_project(tmp_path / "repo")


def one_message(done, *parts: str) -> str:
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    said = [line for line in done.stderr.splitlines() if line.startswith("buildgraph: error")]
    assert len(said) == 1, done.stderr
    for part in parts:
        assert part in done.stderr, done.stderr
    return said[0]


@pytest.mark.parametrize(
    ("given", "named"),
    [
        ({"BUILDGRAPH_SCHEDULER": "127.0.0.1:8786"}, "tcp://HOST:PORT"),
        ({"BUILDGRAPH_SCHEDULER": "tcp://host"}, "tcp://HOST:PORT"),
        ({"BUILDGRAPH_SCHEDULER": "http://h:1"}, "tcp://HOST:PORT"),
        ({"BUILDGRAPH_SCHEDULER_FALLBACK": "yes"}, "give local"),
    ],
)
def test_a_bad_setting_is_named_with_what_to_give(given, named):
    with pytest.raises(BuildgraphError) as caught:
        cluster.settings(given)
    assert next(iter(given)) in caught.value.message
    assert named in str(caught.value)


def test_the_command_line_wins_over_the_environment_and_is_not_a_build_variable():
    on, rest = cluster.split(
        {"BUILDGRAPH_SCHEDULER": "tcp://a:1", "PLATFORM": "linux/amd64"},
        {"BUILDGRAPH_SCHEDULER": "tcp://b:2", "BUILDGRAPH_SCHEDULER_FALLBACK": "local"},
    )
    assert on == cluster.Settings("tcp://a:1", fallback=True)
    assert rest == {"PLATFORM": "linux/amd64"}
    assert cluster.split({}, {}) == (None, {})


def test_a_cluster_build_without_a_writable_remote_cache_is_refused(project, tmp_path):
    done = doit(project, tmp_path / "cache", f"BUILDGRAPH_SCHEDULER=tcp://127.0.0.1:{free_port()}")
    one_message(done, "needs a writable remote cache", "BUILDGRAPH_REMOTE_CACHE_KEY")
    assert not (project / "_out" / "joined.txt").exists()


def remote_env(tmp_path) -> dict[str, str]:
    from buildgraph.remote.entry import keygen

    keygen(tmp_path / "key.pem")
    return {  # a registry nobody listens on: the build fails or falls back before using it
        "BUILDGRAPH_REMOTE_CACHE": f"127.0.0.1:{free_port()}/ci/cache",
        "BUILDGRAPH_REMOTE_CACHE_KEY": str(tmp_path / "key.pem"),
    }


@pytest.mark.slow
def test_an_unreachable_scheduler_is_one_message(project, tmp_path):
    address = f"tcp://127.0.0.1:{free_port()}"
    done = doit(project, tmp_path / "cache", f"BUILDGRAPH_SCHEDULER={address}",
                env=remote_env(tmp_path))  # fmt: skip
    one_message(done, f"the Dask scheduler {address} is unreachable", "FALLBACK=local")
    assert not (project / "_out" / "joined.txt").exists()


@pytest.mark.slow
def test_an_unreachable_scheduler_with_fallback_builds_here_with_a_warning(project, tmp_path):
    address = f"tcp://127.0.0.1:{free_port()}"
    env = {**remote_env(tmp_path), "BUILDGRAPH_SCHEDULER_FALLBACK": "local"}
    done = doit(project, tmp_path / "cache", f"BUILDGRAPH_SCHEDULER={address}", env=env)
    assert done.returncode == 0, done.stderr
    assert "building here instead" in done.stderr
    assert statuses(done.stderr) == {"joined": "built"}
    assert (project / "_out" / "joined.txt").read_text() == "a\necho b\n"


@pytest.mark.slow
def test_a_worker_running_other_code_stops_the_build_at_connect(project, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(REPO / "buildgraph", other / "buildgraph")
    with open(other / "buildgraph" / "engine" / "cluster.py", "a") as edited:
        edited.write("# a worker one commit behind\n")
    env = remote_env(tmp_path)
    spec = WorkerSpec("old", tmp_path / "old-cache", env={**env, "PYTHONPATH": str(other)})
    with serve_cluster(tmp_path / "cluster", [spec], {"PATH": "/usr/bin:/bin"}) as running:
        done = doit(project, tmp_path / "cache", f"BUILDGRAPH_SCHEDULER={running.address}",
                    env=env)  # fmt: skip
    said = one_message(done, "runs other buildgraph code than this client", "install the same")
    assert dispatch.identity()[:12] in said
    assert not (project / "_out" / "joined.txt").exists()
