"""The censorship lab: a censored network in namespaces, for the tests and for users."""
