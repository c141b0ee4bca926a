module buildgraph.dev/init

go 1.19
