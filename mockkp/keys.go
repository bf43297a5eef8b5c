package mockkp

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// maxWrapPlaintext is the largest decoded plaintext wrap accepts (the service's limit).
const maxWrapPlaintext = 7168

type keyVersionJSON struct {
	ID           string     `json:"id"`
	CreationDate *time.Time `json:"creationDate,omitempty"`
}

type dualAuthJSON struct {
	Enabled bool `json:"enabled"`
}

type keyJSON struct {
	ID             string          `json:"id"`
	Name           string          `json:"name"`
	Description    string          `json:"description,omitempty"`
	Type           string          `json:"type"`
	Tags           []string        `json:"Tags,omitempty"`
	Aliases        []string        `json:"aliases,omitempty"`
	AlgorithmType  string          `json:"algorithmType"`
	CreatedBy      string          `json:"createdBy"`
	CreationDate   time.Time       `json:"creationDate"`
	LastUpdateDate time.Time       `json:"lastUpdateDate"`
	LastRotateDate *time.Time      `json:"lastRotateDate,omitempty"`
	KeyVersion     *keyVersionJSON `json:"keyVersion,omitempty"`
	Extractable    bool            `json:"extractable"`
	Expiration     *time.Time      `json:"expirationDate,omitempty"`
	Imported       bool            `json:"imported"`
	Payload        string          `json:"payload,omitempty"`
	State          int             `json:"state"`
	CRN            string          `json:"crn"`
	Deleted        bool            `json:"deleted"`
	DeletionDate   *time.Time      `json:"deletionDate,omitempty"`
	DualAuthDelete dualAuthJSON    `json:"dualAuthDelete"`
}

type keysJSON struct {
	Metadata  collectionMetadata `json:"metadata"`
	Resources []keyJSON          `json:"resources"`
}

func (s *Server) render(inst *instance, k *key, now time.Time, withPayload bool) keyJSON {
	lv := k.latest()
	c := lv.Created
	j := keyJSON{
		ID: k.ID, Name: k.Name, Description: k.Description, Type: keyCollectionType,
		Tags: k.Tags, Aliases: k.Aliases, AlgorithmType: "AES", CreatedBy: "mockkp",
		CreationDate: k.Created, LastUpdateDate: k.Updated, LastRotateDate: k.LastRotated,
		KeyVersion: &keyVersionJSON{ID: lv.ID, CreationDate: &c}, Extractable: k.Extractable,
		Expiration: k.ExpirationDate, Imported: k.Imported, State: k.stateAt(now),
		CRN:     fmt.Sprintf("crn:v1:bluemix:public:kms:local:a/mockkp:%s:key:%s", inst.ID, k.ID),
		Deleted: k.Deleted, DeletionDate: k.DeletionDate,
	}
	if withPayload && k.Extractable && !k.Deleted {
		j.Payload = base64.StdEncoding.EncodeToString(lv.Material)
	}
	return j
}

func oneKey(j keyJSON) keysJSON {
	return keysJSON{Metadata: collectionMetadata{CollectionType: keyCollectionType, CollectionTotal: 1}, Resources: []keyJSON{j}}
}

// lookup finds a key by id or alias.
func lookup(inst *instance, idOrAlias string) (*key, *apiError) {
	if k, ok := inst.Keys[idOrAlias]; ok {
		return k, nil
	}
	for _, id := range inst.Order {
		if k := inst.Keys[id]; k != nil && contains(k.Aliases, idOrAlias) {
			return k, nil
		}
	}
	return nil, errf(http.StatusNotFound, CodeKeyNotFound, "key does not exist")
}

// lookupLive finds a key that is not deleted.
func lookupLive(inst *instance, idOrAlias string) (*key, *apiError) {
	k, aerr := lookup(inst, idOrAlias)
	if aerr != nil {
		return nil, aerr
	}
	if k.Deleted {
		return nil, errf(http.StatusGone, CodeKeyDeleted, "the key has been deleted")
	}
	return k, nil
}

type createKeyJSON struct {
	Name           string     `json:"name"`
	Description    string     `json:"description"`
	Type           string     `json:"type"`
	Extractable    bool       `json:"extractable"`
	Payload        string     `json:"payload"`
	Aliases        []string   `json:"aliases"`
	Tags           []string   `json:"tags"`
	ExpirationDate *time.Time `json:"expirationDate"`
	EncryptedNonce string     `json:"encryptedNonce"`
	IV             string     `json:"iv"`
}

type createJSON struct {
	Resources []createKeyJSON `json:"resources"`
}

func (s *Server) create(_ context.Context, rq *kpRequest) (int, any, *apiError) {
	var body createJSON
	if aerr := rq.decode(&body); aerr != nil {
		return 0, nil, aerr
	}
	if len(body.Resources) != 1 {
		return 0, nil, errf(http.StatusBadRequest, CodeBadBody, "the body must hold exactly one resource")
	}
	c := body.Resources[0]
	if n := len(c.Name); n < 2 || n > 90 {
		return 0, nil, errf(http.StatusBadRequest, CodeInvalidField, "name must be 2 to 90 characters")
	}
	if c.Type != "" && c.Type != keyCollectionType {
		return 0, nil, errf(http.StatusBadRequest, CodeInvalidField, "type must be "+keyCollectionType)
	}
	if c.EncryptedNonce != "" || c.IV != "" {
		return 0, nil, errf(http.StatusBadRequest, CodeInvalidField, "secure import with an import token is not supported by mockkp")
	}
	if len(c.Aliases) > 5 {
		return 0, nil, errf(http.StatusBadRequest, CodeInvalidField, "a key can have at most 5 aliases")
	}
	for _, a := range c.Aliases {
		if a == "" || strings.Contains(a, "/") {
			return 0, nil, errf(http.StatusBadRequest, CodeInvalidField, "alias is empty or has a slash")
		}
		if _, aerr := lookup(rq.inst, a); aerr == nil {
			return 0, nil, errf(http.StatusBadRequest, CodeInvalidField, "alias is already in use in this instance")
		}
	}
	var material []byte
	imported := c.Payload != ""
	if imported {
		m, err := base64.StdEncoding.DecodeString(c.Payload)
		if err != nil || len(m) == 0 {
			return 0, nil, errf(http.StatusBadRequest, CodeInvalidField, "payload must be base64")
		}
		if !c.Extractable && len(m) != 16 && len(m) != 24 && len(m) != 32 {
			return 0, nil, errf(http.StatusBadRequest, CodeInvalidField, "a root key payload must be 16, 24 or 32 bytes")
		}
		if len(m) > maxWrapPlaintext {
			return 0, nil, errf(http.StatusBadRequest, CodeInvalidField, "payload is too large")
		}
		material = m
	} else {
		m, err := randomBytes(32)
		if err != nil {
			return 0, nil, errf(http.StatusInternalServerError, CodeInternal, "failed to generate key material")
		}
		material = m
	}
	id, err := newID()
	if err != nil {
		return 0, nil, errf(http.StatusInternalServerError, CodeInternal, "failed to generate key id")
	}
	now := rq.now
	k := &key{
		ID: id, Name: c.Name, Description: c.Description, Aliases: c.Aliases, Tags: c.Tags,
		Extractable: c.Extractable, Imported: imported, Created: now, Updated: now,
		ExpirationDate: c.ExpirationDate,
		Versions:       []*version{{ID: id, Created: now, Material: material}},
	}
	rq.inst.Keys[id] = k
	rq.inst.Order = append(rq.inst.Order, id)
	return http.StatusCreated, oneKey(s.render(rq.inst, k, now, true)), nil
}

func (s *Server) list(_ context.Context, rq *kpRequest) (int, any, *apiError) {
	q := rq.r.URL.Query()
	limit, offset := 200, 0
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 5000 {
			return 0, nil, errf(http.StatusBadRequest, CodeInvalidQueryParam, "limit must be 1 to 5000")
		}
		limit = n
	}
	if v := q.Get("offset"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return 0, nil, errf(http.StatusBadRequest, CodeInvalidQueryParam, "offset must be a non-negative integer")
		}
		offset = n
	}
	states := map[int]bool{StatePreActive: true, StateActive: true, StateSuspended: true, StateDeactivated: true}
	if v := q.Get("state"); v != "" {
		states = map[int]bool{}
		for _, f := range strings.Split(v, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil {
				return 0, nil, errf(http.StatusBadRequest, CodeInvalidQueryParam, "state must be a comma-separated list of integers")
			}
			states[n] = true
		}
	}
	out := keysJSON{Metadata: collectionMetadata{CollectionType: keyCollectionType}, Resources: []keyJSON{}}
	seen := 0
	for _, id := range rq.inst.Order {
		k := rq.inst.Keys[id]
		if k == nil || !states[k.stateAt(rq.now)] {
			continue
		}
		seen++
		if seen <= offset || len(out.Resources) >= limit {
			continue
		}
		out.Resources = append(out.Resources, s.render(rq.inst, k, rq.now, false))
	}
	out.Metadata.CollectionTotal = len(out.Resources)
	return http.StatusOK, out, nil
}

func (s *Server) get(_ context.Context, rq *kpRequest) (int, any, *apiError) {
	k, aerr := lookupLive(rq.inst, rq.keyID)
	if aerr != nil {
		return 0, nil, aerr
	}
	return http.StatusOK, oneKey(s.render(rq.inst, k, rq.now, true)), nil
}

func (s *Server) metadata(_ context.Context, rq *kpRequest) (int, any, *apiError) {
	k, aerr := lookup(rq.inst, rq.keyID)
	if aerr != nil {
		return 0, nil, aerr
	}
	return http.StatusOK, oneKey(s.render(rq.inst, k, rq.now, false)), nil
}

type versionsJSON struct {
	Metadata  collectionMetadata `json:"metadata"`
	Resources []keyVersionJSON   `json:"resources"`
}

func (s *Server) versions(_ context.Context, rq *kpRequest) (int, any, *apiError) {
	k, aerr := lookupLive(rq.inst, rq.keyID)
	if aerr != nil {
		return 0, nil, aerr
	}
	out := versionsJSON{Metadata: collectionMetadata{CollectionType: versionCollectionType, CollectionTotal: len(k.Versions)}}
	for i := len(k.Versions) - 1; i >= 0; i-- {
		c := k.Versions[i].Created
		out.Resources = append(out.Resources, keyVersionJSON{ID: k.Versions[i].ID, CreationDate: &c})
	}
	return http.StatusOK, out, nil
}

func (s *Server) delete(_ context.Context, rq *kpRequest) (int, any, *apiError) {
	k, aerr := lookupLive(rq.inst, rq.keyID)
	if aerr != nil {
		return 0, nil, aerr
	}
	now := rq.now
	k.Deleted, k.DeletionDate, k.Updated = true, &now, now
	if strings.Contains(rq.r.Header.Get("Prefer"), "return=representation") {
		return http.StatusOK, oneKey(s.render(rq.inst, k, now, false)), nil
	}
	return http.StatusNoContent, nil, nil
}

func (s *Server) restore(_ context.Context, rq *kpRequest) (int, any, *apiError) {
	k, aerr := lookup(rq.inst, rq.keyID)
	if aerr != nil {
		return 0, nil, aerr
	}
	if !k.Deleted {
		return 0, nil, errf(http.StatusConflict, CodeKeyActionInvalidState, "only a deleted key can be restored")
	}
	k.Deleted, k.DeletionDate, k.Updated = false, nil, rq.now
	return http.StatusCreated, oneKey(s.render(rq.inst, k, rq.now, false)), nil
}

// actionJSON is the body of key actions, request and response.
type actionJSON struct {
	Plaintext           *string         `json:"plaintext,omitempty"`
	Ciphertext          string          `json:"ciphertext,omitempty"`
	AAD                 []string        `json:"aad,omitempty"`
	Payload             string          `json:"payload,omitempty"`
	EncryptedNonce      string          `json:"encryptedNonce,omitempty"`
	IV                  string          `json:"iv,omitempty"`
	KeyVersion          *keyVersionJSON `json:"keyVersion,omitempty"`
	RewrappedKeyVersion *keyVersionJSON `json:"rewrappedKeyVersion,omitempty"`
}

func versionJSON(v *version) *keyVersionJSON {
	c := v.Created
	return &keyVersionJSON{ID: v.ID, CreationDate: &c}
}

// rootKeyInState finds a live root key whose state is one of allowed.
func rootKeyInState(rq *kpRequest, action string, allowed ...int) (*key, *apiError) {
	k, aerr := lookupLive(rq.inst, rq.keyID)
	if aerr != nil {
		return nil, aerr
	}
	if k.Extractable {
		return nil, errf(http.StatusBadRequest, CodeKeyRootRequired, action+" needs a root key; this is a standard key")
	}
	st := k.stateAt(rq.now)
	for _, a := range allowed {
		if st == a {
			return k, nil
		}
	}
	return nil, errf(http.StatusConflict, CodeKeyActionInvalidState, fmt.Sprintf("%s is not allowed in key state %d", action, st))
}

func (s *Server) wrap(_ context.Context, rq *kpRequest) (int, any, *apiError) {
	var in actionJSON
	if aerr := rq.decode(&in); aerr != nil {
		return 0, nil, aerr
	}
	k, aerr := rootKeyInState(rq, "wrap", StateActive)
	if aerr != nil {
		return 0, nil, aerr
	}
	out := actionJSON{}
	var plain []byte
	if in.Plaintext == nil || *in.Plaintext == "" {
		dek, err := randomBytes(32)
		if err != nil {
			return 0, nil, errf(http.StatusInternalServerError, CodeInternal, "failed to generate a data encryption key")
		}
		plain = dek
		p := base64.StdEncoding.EncodeToString(dek)
		out.Plaintext = &p
	} else {
		p, err := base64.StdEncoding.Strict().DecodeString(*in.Plaintext)
		if err != nil {
			return 0, nil, errf(http.StatusBadRequest, CodeInvalidField, "plaintext must be base64")
		}
		if len(p) > maxWrapPlaintext {
			return 0, nil, errf(http.StatusBadRequest, CodeInvalidField, fmt.Sprintf("plaintext must be at most %d bytes", maxWrapPlaintext))
		}
		plain = p
	}
	v := k.latest()
	ct, err := seal(k.ID, v, plain, in.AAD)
	if err != nil {
		return 0, nil, errf(http.StatusInternalServerError, CodeInternal, "failed to wrap")
	}
	out.Ciphertext, out.KeyVersion = ct, versionJSON(v)
	return http.StatusOK, out, nil
}

// openCiphertext authenticates a ciphertext of k and returns the plaintext and its version.
func openCiphertext(k *key, ciphertext string, aad []string) ([]byte, *version, *apiError) {
	if ciphertext == "" {
		return nil, nil, errf(http.StatusBadRequest, CodeInvalidField, "ciphertext is missing")
	}
	env, ct, iv, err := parseCiphertext(ciphertext)
	if err != nil {
		return nil, nil, errf(http.StatusUnprocessableEntity, CodeUnprocessableCipher, "the provided ciphertext is invalid or corrupted")
	}
	v := k.version(env.Handle)
	if v == nil {
		return nil, nil, errf(http.StatusUnprocessableEntity, CodeUnprocessableCipher, "the provided ciphertext was not wrapped by this key")
	}
	plain, err := open(k.ID, v, ct, iv, aad)
	if err != nil {
		if errors.Is(err, errBadCiphertext) {
			return nil, nil, errf(http.StatusUnprocessableEntity, CodeUnprocessableCipher, "the provided ciphertext is invalid or corrupted, or the additional authentication data does not match")
		}
		return nil, nil, errf(http.StatusInternalServerError, CodeInternal, "failed to unwrap")
	}
	return plain, v, nil
}

func (s *Server) unwrap(_ context.Context, rq *kpRequest) (int, any, *apiError) {
	var in actionJSON
	if aerr := rq.decode(&in); aerr != nil {
		return 0, nil, aerr
	}
	k, aerr := rootKeyInState(rq, "unwrap", StateActive, StateDeactivated)
	if aerr != nil {
		return 0, nil, aerr
	}
	plain, v, aerr := openCiphertext(k, in.Ciphertext, in.AAD)
	if aerr != nil {
		return 0, nil, aerr
	}
	p := base64.StdEncoding.EncodeToString(plain)
	out := actionJSON{Plaintext: &p, KeyVersion: versionJSON(v)}
	if latest := k.latest(); latest != v {
		ct, err := seal(k.ID, latest, plain, in.AAD)
		if err != nil {
			return 0, nil, errf(http.StatusInternalServerError, CodeInternal, "failed to rewrap")
		}
		out.Ciphertext, out.RewrappedKeyVersion = ct, versionJSON(latest)
	}
	return http.StatusOK, out, nil
}

func (s *Server) rewrap(_ context.Context, rq *kpRequest) (int, any, *apiError) {
	var in actionJSON
	if aerr := rq.decode(&in); aerr != nil {
		return 0, nil, aerr
	}
	k, aerr := rootKeyInState(rq, "rewrap", StateActive)
	if aerr != nil {
		return 0, nil, aerr
	}
	plain, _, aerr := openCiphertext(k, in.Ciphertext, in.AAD)
	if aerr != nil {
		return 0, nil, aerr
	}
	latest := k.latest()
	ct, err := seal(k.ID, latest, plain, in.AAD)
	if err != nil {
		return 0, nil, errf(http.StatusInternalServerError, CodeInternal, "failed to rewrap")
	}
	return http.StatusOK, actionJSON{Ciphertext: ct, KeyVersion: versionJSON(latest), RewrappedKeyVersion: versionJSON(latest)}, nil
}

func (s *Server) rotate(_ context.Context, rq *kpRequest) (int, any, *apiError) {
	var in actionJSON
	if aerr := rq.decode(&in); aerr != nil {
		return 0, nil, aerr
	}
	k, aerr := rootKeyInState(rq, "rotate", StateActive)
	if aerr != nil {
		return 0, nil, aerr
	}
	if in.EncryptedNonce != "" || in.IV != "" {
		return 0, nil, errf(http.StatusBadRequest, CodeInvalidField, "secure import with an import token is not supported by mockkp")
	}
	var material []byte
	switch {
	case k.Imported && in.Payload == "":
		return 0, nil, errf(http.StatusBadRequest, CodeInvalidField, "an imported root key needs a payload to rotate")
	case !k.Imported && in.Payload != "":
		return 0, nil, errf(http.StatusBadRequest, CodeInvalidField, "a generated root key rotates without a payload")
	case k.Imported:
		m, err := base64.StdEncoding.DecodeString(in.Payload)
		if err != nil || (len(m) != 16 && len(m) != 24 && len(m) != 32) {
			return 0, nil, errf(http.StatusBadRequest, CodeInvalidField, "payload must be base64 of 16, 24 or 32 bytes")
		}
		material = m
	default:
		m, err := randomBytes(32)
		if err != nil {
			return 0, nil, errf(http.StatusInternalServerError, CodeInternal, "failed to generate key material")
		}
		material = m
	}
	id, err := newID()
	if err != nil {
		return 0, nil, errf(http.StatusInternalServerError, CodeInternal, "failed to generate version id")
	}
	now := rq.now
	k.Versions = append(k.Versions, &version{ID: id, Created: now, Material: material})
	k.LastRotated, k.Updated = &now, now
	return http.StatusNoContent, nil, nil
}

func (s *Server) disable(_ context.Context, rq *kpRequest) (int, any, *apiError) {
	return setSuspended(rq, "disable", StateActive, true)
}

func (s *Server) enable(_ context.Context, rq *kpRequest) (int, any, *apiError) {
	return setSuspended(rq, "enable", StateSuspended, false)
}

// setSuspended moves a key between active and suspended; action is allowed only in state from.
func setSuspended(rq *kpRequest, action string, from int, suspended bool) (int, any, *apiError) {
	k, aerr := lookupLive(rq.inst, rq.keyID)
	if aerr != nil {
		return 0, nil, aerr
	}
	if st := k.stateAt(rq.now); st != from {
		return 0, nil, errf(http.StatusConflict, CodeKeyActionInvalidState, fmt.Sprintf("%s is not allowed in key state %d", action, st))
	}
	k.Suspended, k.Updated = suspended, rq.now
	return http.StatusNoContent, nil, nil
}
