"""`python -m treadle.cli`."""

from . import main

main()
