"""Build-time generators: the IAM policies, the ClusterRole and the admission bounds, the reference
pages and the settings page, all from what the actions and executors declare. Run by `make
permissions` (and checked by `make check-permissions`); the Lambda's runtime never imports them."""
