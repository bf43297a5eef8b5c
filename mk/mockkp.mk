# mockkp (mockkp/, cmd/mockkp): the mock Key Protect + IAM, and `keysync wrap` / `keysync kp`.
.PHONY: mockkp mockkp-bench

MOCKKP_ADDR ?= 127.0.0.1:8300
MOCKKP_ADMIN_ADDR ?= 127.0.0.1:8301
MOCKKP_DIR ?= _out/mockkp
MOCKKP_SEED ?= mockkp/example-seed.json

mockkp: ## run mockkp in the foreground (127.0.0.1:8300, admin :8301), seeded from mockkp/example-seed.json, state in _out/mockkp
	@mkdir -p $(MOCKKP_DIR) $(BIN)
	@$(GO) build -trimpath -o $(BIN)/mockkp ./cmd/mockkp
	exec $(BIN)/mockkp --addr $(MOCKKP_ADDR) --admin-addr $(MOCKKP_ADMIN_ADDR) \
	  --seed $(MOCKKP_SEED) --state $(MOCKKP_DIR)/state.json

mockkp-bench: ## unwraps/s and p99 of the official client against mockkp on loopback (both transports)
	$(GO) test -run '^$$' -bench 'BenchmarkUnwrap' -benchtime 5s -count 1 ./mockkp/
