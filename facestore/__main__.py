"""`python -m facestore` is the `facestore` command."""

from facestore.cli.main import main

if __name__ == "__main__":
    main(prog_name="facestore")
