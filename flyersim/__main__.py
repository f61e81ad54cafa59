"""``python -m flyersim ...`` runs the ``flyersim`` command line."""

from flyersim.sim.app.cli import main

if __name__ == "__main__":
    main()
