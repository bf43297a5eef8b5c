# Fixtures (fixtures/, internal/cli/fixtures, internal/registry): encrypted fixture images and
# keys, built without pulling anything (`keysync fixtures build|push|verify`).
.PHONY: fixtures fixtures-push fixtures-test


FIXTURES_OUT ?= _out/fixtures
FIXTURES_PREFIX ?= keysync-fixtures

fixtures: ## write the fixture images (OCI layouts) and fresh keys to $(FIXTURES_OUT); prints the manifest
	$(GO) build -trimpath -o $(BIN)/keysync ./cmd/keysync
	$(BIN)/keysync fixtures build --out $(FIXTURES_OUT)

fixtures-push: ## push the fixtures to REGISTRY=host:port (TLS_VERIFY=false for plain HTTP); add UNIQUE=1 for fresh tags
	@[ -n "$(REGISTRY)" ] || { echo "set REGISTRY=host:port"; exit 2; }
	$(GO) build -trimpath -o $(BIN)/keysync ./cmd/keysync
	$(BIN)/keysync fixtures push --registry $(REGISTRY) --prefix $(FIXTURES_PREFIX) --out $(FIXTURES_OUT) \
	  --tls-verify=$(or $(TLS_VERIFY),true) $(if $(UNIQUE),--unique)

fixtures-test: deps ## the fixtures tests alone (real docker-registry, skopeo interop)
	$(GO) test -count=1 ./fixtures/... ./internal/registry/... ./internal/cli/fixtures/...
