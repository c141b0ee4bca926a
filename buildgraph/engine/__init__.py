"""The engine: variables, specs, graph, keys, store, state, sessions and the doit bridge.

It knows no OS. The OS side (buildgraph.steps, .formats, .oci, .imager and the rows of
buildgraph.variables) plugs in through the tables the engine defines: variable rows
(engine.variables.register), steps (engine.step.provide), tools' packages
(engine.tools.PACKAGES); see buildgraph.plugin. A test holds the line: nothing here
imports the OS side.
"""
