"""``python -m leadsync``."""

from leadsync.cli import run

if __name__ == "__main__":
    run()
