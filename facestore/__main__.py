"""`python -m facestore` is the `facestore` command."""

from facestore.cli.main import main

main(prog_name="facestore")
