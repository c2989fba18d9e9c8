# procrefd — build, run, test. `make run` and `make test` install what they need.
SWIFT        ?= swift
DEB_PACKAGES := libmicrohttpd-dev libsqlite3-dev pkg-config
VENV         := .venv
# hypothesis is pinned below 6.150: later versions crash inside schemathesis' coverage phase here.
# selenium is pinned at 4.46: later ones need a newer certifi than the package mirror has.
PY_PACKAGES  := openapi-spec-validator==0.9.0 PyYAML==6.0.3 schemathesis==4.32.5 hypothesis==6.140.0 selenium==4.46.0
BIN_DIR       = $(shell $(SWIFT) build --show-bin-path)
RELEASE_DIR   = $(shell $(SWIFT) build -c release --show-bin-path)
PREFIX       ?= /usr/local
# `make install` strips the binaries (procrefd: about 57 MB with its debug info, 23 MB
# without); `make install INSTALL_STRIP=` keeps the debug info.
INSTALL_STRIP ?= -s
DESTDIR      ?=

.PHONY: all deps venv build release install man deb run test soak bench clean

all: build

## Debian packages (C libraries the Swift targets link); apt-get only when one is missing.
## `make deps DEB_PACKAGES="..."` installs others the same way.
deps:
	@missing=""; for p in $(DEB_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

## Python tools used by the tests (OpenAPI validation, schemathesis), in a local venv.
venv: $(VENV)/.ready
$(VENV)/.ready: Makefile
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check $(PY_PACKAGES)
	touch $@

build: deps
	$(SWIFT) build

## Release builds: procrefd with the Swift runtime linked in (it runs on a host without the
## toolchain), and the holder (Embedded Swift, static) as its own product.
release: deps
	$(SWIFT) build -c release --static-swift-stdlib --product procrefd
	$(SWIFT) build -c release --product procref-holder
	$(SWIFT) build -c release --product procref-logpump
	$(SWIFT) build -c release --static-swift-stdlib --product procref-door

## Installs the release binaries, the systemd unit and shell completions under
## $(DESTDIR)$(PREFIX) (default /usr/local).
install: release
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib/systemd/system \
	  $(DESTDIR)$(PREFIX)/share/bash-completion/completions $(DESTDIR)$(PREFIX)/share/zsh/site-functions \
	  $(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d
	install -m 755 $(INSTALL_STRIP) $(RELEASE_DIR)/procrefd $(RELEASE_DIR)/procref-holder $(RELEASE_DIR)/procref-logpump $(RELEASE_DIR)/procref-door $(DESTDIR)$(PREFIX)/bin/
	sed 's|@BINDIR@|$(PREFIX)/bin|g' dist/procrefd.service > $(DESTDIR)$(PREFIX)/lib/systemd/system/procrefd.service
	$(RELEASE_DIR)/procrefd --generate-completion-script bash > $(DESTDIR)$(PREFIX)/share/bash-completion/completions/procrefd
	$(RELEASE_DIR)/procrefd --generate-completion-script zsh > $(DESTDIR)$(PREFIX)/share/zsh/site-functions/_procrefd
	$(RELEASE_DIR)/procrefd --generate-completion-script fish > $(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d/procrefd.fish
	$(MAKE) --no-print-directory man  # after the binaries are copied: its own release build is not the static one
	install -d $(DESTDIR)$(PREFIX)/share/man/man1 $(DESTDIR)$(PREFIX)/share/man/man5
	install -m 644 .build/man/*.1 $(DESTDIR)$(PREFIX)/share/man/man1/
	install -m 644 man/procrefd.toml.5 $(DESTDIR)$(PREFIX)/share/man/man5/

## The Debian package: .build/procrefd_VERSION_ARCH.deb (dist/deb/build-deb.sh), checked
## with lintian.
deb: deps
	$(MAKE) --no-print-directory deps DEB_PACKAGES="lintian fakeroot patchelf"
	$(MAKE) --no-print-directory man
	$(MAKE) --no-print-directory release  # after man: its plugin's own release build links the runtime dynamically
	dist/deb/build-deb.sh "$(RELEASE_DIR)" .build/man .build
	lintian --fail-on error .build/procrefd_*.deb

## Man pages: procrefd(1) and one per subcommand, generated from the same definitions as
## --help (swift-argument-parser's generate-manual), into .build/man; procrefd.toml(5) is
## written by hand in man/ (a test keeps it to the keys the parser accepts).
man:
	rm -rf .build/man && mkdir -p .build/man
	$(SWIFT) package --allow-writing-to-package-directory generate-manual --multi-page --output-directory .build/man

## Start the release build of procrefd on its embedded defaults (state in
## ~/.local/state/procrefd, 127.0.0.1:7683).
run: release
	$(RELEASE_DIR)/procrefd serve

## Also for the tests: promtool (Debian's prometheus) lints /metrics; the dashboard is tested
## in Debian's headless Chromium through its chromedriver (selenium, in the venv); the sqlite3
## CLI edits a database that `events verify` must catch; curl is the client other users run;
## redis-server (with redis-cli) is the real program behind the front-door tests.
TEST_DEB_PACKAGES := prometheus chromium chromium-driver sqlite3 curl redis-server

test: deps venv
	$(MAKE) --no-print-directory deps DEB_PACKAGES="$(TEST_DEB_PACKAGES)"
	$(SWIFT) build --build-tests
	PROCREFD_BIN_DIR="$(BIN_DIR)" PROCREFD_PYTHON="$(CURDIR)/$(VENV)/bin/python" $(SWIFT) test
	$(VENV)/bin/python Tests/ui/dashboard_test.py --bin "$(BIN_DIR)" --artifacts .build/ui-artifacts
	python3 Tests/security/security_test.py --bin "$(BIN_DIR)"
	python3 clients/python/test_procrefd_client.py --bin "$(BIN_DIR)"
	Tests/fuzz/schemathesis.sh "$(BIN_DIR)" "$(VENV)" 100
	python3 bench/flood.py --bin "$(BIN_DIR)"
	python3 bench/soak.py --bin "$(BIN_DIR)" --seconds 60
	Tests/install/check-install.sh
	$(MAKE) --no-print-directory deb
	Tests/install/check-deb.sh .build/procrefd_*.deb

## The chaos soak for 10 minutes (make test runs 60 s of it). SEED=N repeats a run.
soak: build
	python3 bench/soak.py --bin "$(BIN_DIR)" --seconds 600 $(if $(SEED),--seed $(SEED))

## Release build, then the benchmarks against etcd (numbers printed and written to
## bench/RESULTS.md, never asserted). Needs wrk, etcd-server and supervisor (the cold-cycle
## comparison), redis-server, haproxy and postgresql (the front door's), installed when missing.
## procrefd and its helpers are the builds `make install` installs (the Swift runtime linked in).
bench: release
	$(MAKE) --no-print-directory deps DEB_PACKAGES="wrk etcd-server gcc supervisor redis-server haproxy postgresql"
	$(SWIFT) build -c release --product wire-bench
	python3 bench/run.py --bin "$$($(SWIFT) build -c release --show-bin-path)" --audit --front --freeze

clean:
	rm -rf .build $(VENV)
