# Two commands on a fresh machine: `make run` and `make test`. Both build .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat requirements.txt requirements-dev.txt | cksum | cut -d' ' -f1)
PORT ?= 8000
CHROMIUM ?= /usr/bin/chromium
# Deployment (infra/): the stage to synthesise or deploy, and the CDK CLI pinned in infra/package.json.
STAGE ?= dev
CDK := infra/node_modules/.bin/cdk
# jsii (under aws-cdk-lib) prints a banner on every run when Node is past its end of life.
INFRA_ENV := JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION=20

.PHONY: run test unit lint bench clean synth cfn-lint bootstrap deploy diff infra-test package-size dlq redrive

$(STAMP): requirements.txt requirements-dev.txt
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "omnihub needs Python 3.11+"'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "Installing dependencies into $(VENV) (first run only)..."
	@$(BIN)/python -m pip install --quiet --upgrade "pip<26.3"  # chalice 1.34 requires pip<26.3
	@$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	@rm -f $(VENV)/.installed-*
	@touch $(STAMP)

run: $(STAMP)
	@PORT=$(PORT) $(BIN)/python -m local

# The browser tests drive Debian's Chromium (Playwright's own browser download is not used).
$(CHROMIUM):
	@echo "Installing Debian's chromium for the browser tests (first run only)..."
	@SUDO=$$([ "$$(id -u)" -eq 0 ] || echo sudo); $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium

test: $(STAMP) $(CHROMIUM)
	$(BIN)/ruff check .
	CHROMIUM=$(CHROMIUM) $(BIN)/python -m pytest $(PYTEST_ARGS)

unit: $(STAMP)
	$(BIN)/python -m pytest tests/unit

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	$(BIN)/python bench/inbound.py $(BENCH_ARGS)

# Dead letters (README "Dead letters"): AWS by default; AWS_ENDPOINT_URL=<emulator> for make run.
dlq: $(STAMP)
	$(BIN)/python -m ops.dlq list $(DLQ_ARGS)

redrive: $(STAMP)
	@test -n "$(QUEUE)" || { echo "usage: make redrive QUEUE=routing|timers|crm-events [DLQ_ARGS=--dry-run]"; exit 2; }
	$(BIN)/python -m ops.dlq redrive $(QUEUE) $(DLQ_ARGS)

# --- Deployment (AWS CDK; see README "Deploy") ---------------------------------------------
# Synthesis needs no AWS credentials: the stack is environment-agnostic.
synth: $(STAMP)
	@rm -rf cdk.out
	$(INFRA_ENV) $(BIN)/python infra/app.py -c stage=$(STAGE)

cfn-lint: $(STAMP)
	@rm -rf cdk.out
	$(INFRA_ENV) $(BIN)/python infra/app.py -c stage=dev,prod
	$(BIN)/cfn-lint --config-file .cfnlintrc -- cdk.out/*.template.json

infra-test: $(STAMP)
	$(BIN)/python -m pytest tests/infra -q

package-size: $(STAMP)
	$(BIN)/python bench/package_size.py

$(CDK): infra/package.json infra/package-lock.json
	@echo "Installing the AWS CDK CLI into infra/node_modules (first use only)..."
	npm ci --prefix infra --no-audit --no-fund
	@touch $(CDK)

# Once per account and region: the bucket and roles `cdk deploy` uploads assets with.
bootstrap: $(STAMP) $(CDK)
	$(INFRA_ENV) $(CDK) bootstrap -c stage=$(STAGE)

diff: $(STAMP) $(CDK)
	$(INFRA_ENV) $(CDK) diff -c stage=$(STAGE)

# make deploy STAGE=prod [ALARM_EMAIL=ops@example.com] [PUBLIC_BASE_URL=https://hub.example.com]
deploy: $(STAMP) $(CDK)
	$(INFRA_ENV) $(CDK) deploy -c stage=$(STAGE) --require-approval broadening \
	  $(if $(ALARM_EMAIL),--parameters AlarmEmail=$(ALARM_EMAIL)) \
	  $(if $(PUBLIC_BASE_URL),--parameters PublicBaseUrl=$(PUBLIC_BASE_URL)) \
	  --outputs-file infra/.build/outputs-$(STAGE).json $(CDK_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache cdk.out infra/.build infra/node_modules
