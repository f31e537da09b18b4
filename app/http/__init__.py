"""http: see the package docstring in the README's layout."""
