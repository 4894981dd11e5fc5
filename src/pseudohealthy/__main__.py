"""`python -m pseudohealthy ...` and `torchrun -m pseudohealthy train ...` enter here."""
from pseudohealthy.cli.main import main

if __name__ == "__main__":
    main()
