# The two commands a newcomer needs: `make demo` and `make test`. Everything else is a helper.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAGE ?= dev
STAMP := $(VENV)/.installed-$(shell cat requirements.txt requirements-dev.txt constraints.txt pyproject.toml | sha1sum | cut -c1-12)


.PHONY: help venv native apiserver browser docs-assets demo stack stack-down test package conformance fuzz hostile lint typecheck unit permissions check-permissions bench lock clean prerequisites deploy flow-logs

help:
	@echo "make demo    run the responder end to end on the embedded local stack"
	@echo "make stack   start and seed the local stack and leave it running (make stack-down stops it)"
	@echo "make test    lint, type-check, check generated permissions, run every test (unit + integration)"
	@echo "make conformance [SAMPLES=DIR]  replay the sample corpus in tests/samples (or a folder of public samples)"
	@echo "make fuzz    100,000 mutated events through every source's intake (EVENTS=N), and hostile flow-log"
	@echo "             blocks through the compiled and the pure-Python scanner (ROUNDS=N of 120 blocks)"
	@echo "make hostile every field of every event, replaced by hostile values (counts what escapes)"
	@echo "make permissions   regenerate .chalice/policy-*.json and deploy/rbac/clusterrole.yaml"
	@echo "make native  build the flow-log scanner's compiled first pass (test, demo and package do it)"
	@echo "make apiserver   build the local kube-apiserver (KUBE_VERSION=1.35.4 for another release)"
	@echo "make bench   measure cold-start import time, flow-log scan speed and many-account containment"
	@echo "make prerequisites STAGE=prod; make deploy STAGE=prod   deploy to AWS (see docs/deploy.md)"
	@echo "make flow-logs STAGE=prod LOG_GROUP=/vpc/flow-logs (or BUCKET=...)   connect a flow log"

# The project itself goes in as a plain path entry, not setuptools' import hook: the hook costs every
# process 13 ms (re, pathlib) at start.
$(STAMP):
	@echo "==> Installing pinned dependencies into $(VENV)"
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -r requirements-dev.txt -c constraints.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e . --config-settings editable_mode=compat
	@rm -f $(VENV)/.installed-*
	@touch $(STAMP)

venv: $(STAMP)

# The flow-log scanner's compiled first pass (C, limited API); without a compiler the scanner runs in pure Python.
NATIVE := chalicelib/flowlogs/_prefilter.abi3.so
$(NATIVE): chalicelib/flowlogs/_prefilter.c deploy/native.py | $(STAMP)
	$(PY) -m deploy.native

native: $(NATIVE)

# Builds a real, current kube-apiserver once (about 5 minutes on 2 cores) from the Go modules pinned in
# devstack/kube-apiserver/ and caches it in ~/.cache/eks-responder. KUBE_VERSION=1.35.4 builds another release.
apiserver:
	@bash devstack/build-kube-apiserver.sh >/dev/null

demo: venv native apiserver
	$(PY) -m devstack.demo

# A local stack that stays up to experiment with (see `make stack`'s output); `make stack-down` stops it.
stack: venv native apiserver
	$(PY) -m devstack.running up

stack-down: venv
	$(PY) -m devstack.running down

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: venv
	$(VENV)/bin/mypy

check-permissions: venv
	$(PY) -m chalicelib.generate.permissions --check

permissions: venv
	$(PY) -m chalicelib.generate.permissions

# Debian's Chromium, for the browser check of an incident timeline (Playwright drives it: no browser is downloaded).
# The docs site's own copy of Mermaid (pinned in docs/assets/vendor.lock.json): diagrams render offline.
docs-assets: venv
	@command -v npm >/dev/null || { echo "==> Installing Debian's npm (once)"; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends npm >/dev/null \
	  || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends npm >/dev/null; }; }
	$(PY) -m devstack.docs_assets

browser:
	@command -v chromium >/dev/null || { echo "==> Installing Debian's chromium (once)"; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null \
	  || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null; }; }

test: venv native apiserver browser docs-assets lint typecheck check-permissions
	$(VENV)/bin/pytest

unit: venv native
	$(VENV)/bin/pytest tests/unit

# The long mutation-fuzzing campaign (the property test in `make test` is its short, fixed-seed form).
fuzz: venv native
	$(PY) -m tests.fuzzing.mutations --events $(or $(EVENTS),100000)
	$(PY) -m tests.fuzzing.flow_blocks --rounds $(or $(ROUNDS),100)

# The whole hostile-values corpus (`make test` runs it for one event per source and detail type).
hostile: venv native
	$(PY) -m tests.fuzzing.hostile

# Replay a folder of sample events (guardduty/, kms/, ecr/, flowlogs/) offline: the licensed corpus in
# tests/samples by default, or make conformance SAMPLES=DIR
SAMPLES ?= tests/samples
conformance: venv native
	SAMPLES_DIR="$(abspath $(SAMPLES))" $(VENV)/bin/pytest -m conformance tests/conformance

# Each benchmark prints its figures; the last step prints them all beside their goals (exit 1 if one is missed).
bench: venv native
	rm -f .bench/results.jsonl
	$(PY) bench/import_time.py
	$(PY) bench/cold_first_event.py
	$(PY) bench/time_to_contain.py
	$(PY) bench/flowlogs.py
	$(PY) bench/flow_lambda.py
	$(PY) bench/accounts.py
	$(PY) bench/drills.py
	$(PY) bench/goals.py

# Create a stage's table, bucket, topic and secret, and point .chalice/config.json at them.
prerequisites: venv
	$(PY) -m deploy.prerequisites --stage $(STAGE)

# The package is built once (`chalice package`), given the bytecode of every module for the runtime
# (deploy/bytecode.py), and `chalice deploy` then reuses that package: Chalice names it by a hash of
# the requirements and the app's files, so nothing may write bytecode into the tree in between.
CHALICE := PYTHONDONTWRITEBYTECODE=1 POWERTOOLS_TRACE_DISABLED=true $(VENV)/bin/chalice

package: venv native check-permissions
	find chalicelib -name __pycache__ -type d -prune -exec rm -rf {} +
	rm -rf .chalice/deployments .chalice/package-$(STAGE)
	$(CHALICE) package --stage $(STAGE) .chalice/package-$(STAGE) >/dev/null
	PYTHONDONTWRITEBYTECODE=1 $(PY) -m deploy.bytecode .chalice/deployments/*.zip
	$(CHALICE) package --stage $(STAGE) .chalice/package-$(STAGE) >/dev/null
	$(PY) -m deploy.delivery --stage $(STAGE) --template .chalice/package-$(STAGE)/sam.json
	@echo "==> .chalice/package-$(STAGE): sam.json and deployment.zip (with bytecode)"

deploy: package
	$(CHALICE) deploy --stage $(STAGE)
	$(PY) -m deploy.delivery --stage $(STAGE)
	$(PY) -m deploy.dashboard --stage $(STAGE)

# Connect a flow log after `make deploy`: LOG_GROUP=<group> (CloudWatch Logs) or BUCKET=<bucket> (S3).
flow-logs: venv
	$(PY) -m deploy.flow_logs --stage $(STAGE) $(if $(LOG_GROUP),--log-group $(LOG_GROUP),--bucket $(BUCKET))

# Re-pin every transitive dependency after changing requirements*.txt.
lock: venv
	@echo "# Every package in the development environment, pinned (pip freeze). Regenerate with: make lock" > constraints.txt
	$(PY) -m pip freeze --exclude-editable | grep -v '^eks-responder' >> constraints.txt

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .demo
