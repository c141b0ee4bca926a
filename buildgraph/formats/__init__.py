"""Writers of on-disk formats that no installed tool writes reproducibly enough."""
