"""The operator's commands: `eks-responder` (replay, approve, release, report, redrive, doctor, ...)
and the incident timeline. They call the Lambda entry as a function would; nothing imports them."""
