"""colonies-operator: a Kubernetes operator that makes a cluster a ColonyOS container executor."""

__version__ = "0.1.0"
