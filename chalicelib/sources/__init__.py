"""Event sources: raw dict -> typed model -> Incident. Nothing here talks to AWS or Kubernetes."""
