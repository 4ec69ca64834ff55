"""basisnet-deploy: train, cost, export and run BasisNet two-stage classifiers."""

__version__ = "0.1.0"
