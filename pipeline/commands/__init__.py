"""Command groups of `dra-pipeline`, one module each; cli.py attaches them."""
