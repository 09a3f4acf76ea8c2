"""`python -m eventgate.cli`."""

from eventgate.cli import main

main()
