"""The cluster tests: a package so that its control plane (a package-scoped fixture) stops when the
last of them has run, instead of idling beside the rest of the suite."""
