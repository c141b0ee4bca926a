"""The Image Factory: a schematic service that builds and serves boot assets on demand."""
