"""upgrader: safe, resumable, one-node-at-a-time upgrades of kubeadm clusters."""

__version__ = "0.1.0"
