"""The CLI entry point: `python starter.py <command>` (see `--help`)."""

from nurture.cli import main

if __name__ == "__main__":
    main()
