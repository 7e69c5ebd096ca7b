"""The policy simulator: drawn workloads run through a retention policy in virtual time."""
