package mockkp

import (
	"encoding/json"
	"net/http"
)

// Error codes of the service's error envelope (resources[0].reasons[0].code).
const (
	CodeUnauthorized          = "UNAUTHORIZED_ERR"             // 401 bad/expired token, 403 instance not allowed
	CodeKeyNotFound           = "KEY_NOT_FOUND_ERR"            // 404 no such key (or alias)
	CodeNotFound              = "NOT_FOUND_ERR"                // 404 no such route
	CodeMethodNotAllowed      = "METHOD_NOT_ALLOWED_ERR"       // 405
	CodeBadBody               = "BAD_BODY_ERR"                 // 400 body is not the expected JSON
	CodeInvalidField          = "INVALID_FIELD_ERR"            // 400 a field is missing or malformed
	CodeInvalidQueryParam     = "INVALID_QUERY_PARAM_ERR"      // 400 unknown action or bad limit/offset
	CodeKeyRootRequired       = "KEY_ROOT_REQ_ERR"             // 400 the action needs a root key
	CodeKeyActionInvalidState = "KEY_ACTION_INVALID_STATE_ERR" // 409 the key's state forbids the action
	CodeKeyDeleted            = "KEY_DELETED_ERR"              // 410 the key is deleted (destroyed)
	CodeUnprocessableCipher   = "UNPROCESSABLE_CIPHERTEXT_ERR" // 422 tampered/foreign ciphertext or wrong AAD
	CodeTooManyRequests       = "TOO_MANY_REQUESTS_ERR"        // 429 (injected fault)
	CodeInternal              = "INTERNAL_SERVER_ERR"          // 500 (injected fault or real failure)
	CodeServiceUnavailable    = "SERVICE_UNAVAILABLE_ERR"      // 503 (injected fault)
)

type errorReason struct {
	Code     string `json:"code"`
	Message  string `json:"message"`
	Status   int    `json:"status"`
	MoreInfo string `json:"moreInfo"`
}

type errorResource struct {
	ErrorMsg string        `json:"errorMsg"`
	Reasons  []errorReason `json:"reasons"`
}

type errorBody struct {
	Metadata  collectionMetadata `json:"metadata"`
	Resources []errorResource    `json:"resources"`
}

type collectionMetadata struct {
	CollectionType  string `json:"collectionType"`
	CollectionTotal int    `json:"collectionTotal"`
}

const (
	errorCollectionType   = "application/vnd.ibm.kms.error+json"
	keyCollectionType     = "application/vnd.ibm.kms.key+json"
	versionCollectionType = "application/vnd.ibm.kms.key_version+json"
	moreInfoURL           = "https://cloud.ibm.com/apidocs/key-protect"
)

// apiError is an error the handlers return; serveKP writes it as the service's envelope.
type apiError struct {
	Status  int
	Code    string
	Message string
}

func (e *apiError) Error() string { return e.Code + ": " + e.Message }

func errf(status int, code, msg string) *apiError {
	return &apiError{Status: status, Code: code, Message: msg}
}

func writeKPError(w http.ResponseWriter, e *apiError) {
	body := errorBody{
		Metadata: collectionMetadata{CollectionType: errorCollectionType, CollectionTotal: 1},
		Resources: []errorResource{{
			ErrorMsg: http.StatusText(e.Status) + ": " + e.Message,
			Reasons:  []errorReason{{Code: e.Code, Message: e.Message, Status: e.Status, MoreInfo: moreInfoURL}},
		}},
	}
	writeJSON(w, e.Status, body)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	data, err := json.Marshal(v)
	if err != nil {
		http.Error(w, "failed to encode response", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(data)
}
