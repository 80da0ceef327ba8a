# The two commands of the README: `make demo` and `make test`.
# Both do all set-up on a fresh Debian 12 machine (as root).

PYTHON ?= python3
VENV := .venv
APT_PACKAGES := runc mmdebstrap uidmap postgresql docker-registry skopeo busybox-static python3-venv ca-certificates s3fs iproute2 iptables
STAMP := $(VENV)/.installed

.PHONY: demo test deps venv up down clean bench

deps:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing: $$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

up: deps venv
	@$(VENV)/bin/shoal up --detach

down:
	@$(VENV)/bin/shoal down

demo: up
	@eval "$$($(VENV)/bin/shoal env)" && $(VENV)/bin/modal run examples/hello.py
	@echo
	@echo 'Run your own app:  eval "$$($(VENV)/bin/shoal env)" && $(VENV)/bin/modal run your_app.py'

test: deps venv
	$(VENV)/bin/pytest -q

bench: up
	@eval "$$($(VENV)/bin/shoal env)" && $(VENV)/bin/python bench/run_all.py

clean:
	-$(VENV)/bin/shoal down
	rm -rf $(VENV)
