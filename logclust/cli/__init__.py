"""The `logclust` command line (`logclust.cli.main:main`)."""
