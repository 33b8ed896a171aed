"""The rules: their model, the loader that checks them, the matcher that picks a playbook for an
incident, and which rules each deployed function can reach."""
