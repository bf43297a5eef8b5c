package mockkp

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"
)

// IAM error codes (errorCode of the IAM error body).
const (
	IAMCodeAPIKeyNotFound   = "BXNIM0415E" // 400 Provided API key could not be found.
	IAMCodeMissingProperty  = "BXNIM0109E" // 400 a form property is missing
	IAMCodeUnsupportedGrant = "BXNIM0103E" // 400 grant_type is not the apikey grant
	IAMCodeUnavailable      = "BXNIM0001E" // injected fault status
	apikeyGrantType         = "urn:ibm:params:oauth:grant-type:apikey"
)

type iamErrorBody struct {
	ErrorCode    string          `json:"errorCode"`
	ErrorMessage string          `json:"errorMessage"`
	Context      iamErrorContext `json:"context"`
}

type iamErrorContext struct {
	RequestID string `json:"requestId"`
}

func writeIAMError(w http.ResponseWriter, status int, code, msg string) {
	id, _ := newID()
	writeJSON(w, status, iamErrorBody{ErrorCode: code, ErrorMessage: msg, Context: iamErrorContext{RequestID: id}})
}

type tokenClaims struct {
	Sub string `json:"sub"`
	Iat int64  `json:"iat"`
	Exp int64  `json:"exp"`
	Jti string `json:"jti"`
}

// tokenHeader is the fixed JWT header of issued tokens.
const tokenHeader = `{"alg":"HS256","typ":"JWT"}`

func signToken(secret []byte, c tokenClaims) (string, error) {
	payload, err := json.Marshal(c)
	if err != nil {
		return "", err
	}
	enc := base64.RawURLEncoding
	signed := enc.EncodeToString([]byte(tokenHeader)) + "." + enc.EncodeToString(payload)
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(signed))
	return signed + "." + enc.EncodeToString(mac.Sum(nil)), nil
}

var errBadToken = errors.New("invalid token")

func verifyToken(secret []byte, tok string) (tokenClaims, error) {
	i := strings.LastIndexByte(tok, '.')
	if i < 0 {
		return tokenClaims{}, errBadToken
	}
	signed, sig := tok[:i], tok[i+1:]
	got, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil {
		return tokenClaims{}, errBadToken
	}
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(signed))
	if !hmac.Equal(got, mac.Sum(nil)) {
		return tokenClaims{}, errBadToken
	}
	_, payloadB64, ok := strings.Cut(signed, ".")
	if !ok {
		return tokenClaims{}, errBadToken
	}
	payload, err := base64.RawURLEncoding.DecodeString(payloadB64)
	if err != nil {
		return tokenClaims{}, errBadToken
	}
	var c tokenClaims
	if err := json.Unmarshal(payload, &c); err != nil || c.Sub == "" {
		return tokenClaims{}, errBadToken
	}
	return c, nil
}

type tokenResponse struct {
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int64  `json:"expires_in"`
	Expiration   int64  `json:"expiration"`
	Scope        string `json:"scope"`
}

// serveToken is POST /identity/token and /oidc/token.
func (s *Server) serveToken(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxBodyBytes)
	if err := r.ParseForm(); err != nil {
		writeIAMError(w, http.StatusBadRequest, IAMCodeMissingProperty, "The request body could not be parsed as a form.")
		return
	}
	if gt := r.PostForm.Get("grant_type"); gt != apikeyGrantType {
		if gt == "" {
			writeIAMError(w, http.StatusBadRequest, IAMCodeMissingProperty, "Property missing or empty: grant_type.")
			return
		}
		writeIAMError(w, http.StatusBadRequest, IAMCodeUnsupportedGrant, "Unsupported grant type.")
		return
	}
	apiKey := r.PostForm.Get("apikey")
	if apiKey == "" {
		writeIAMError(w, http.StatusBadRequest, IAMCodeMissingProperty, "Property missing or empty: apikey.")
		return
	}
	sub := subjectOf(apiKey)
	if !s.knownSubject(sub) {
		writeIAMError(w, http.StatusBadRequest, IAMCodeAPIKeyNotFound, "Provided API key could not be found.")
		return
	}
	now := s.now()
	exp := now.Add(s.tokenTTL)
	jti, err := newID()
	if err != nil {
		writeIAMError(w, http.StatusInternalServerError, IAMCodeUnavailable, "Internal error.")
		return
	}
	tok, err := signToken(s.secret, tokenClaims{Sub: sub, Iat: now.Unix(), Exp: exp.Unix(), Jti: jti})
	if err != nil {
		writeIAMError(w, http.StatusInternalServerError, IAMCodeUnavailable, "Internal error.")
		return
	}
	refresh, err := newID()
	if err != nil {
		writeIAMError(w, http.StatusInternalServerError, IAMCodeUnavailable, "Internal error.")
		return
	}
	writeJSON(w, http.StatusOK, tokenResponse{
		AccessToken: tok, RefreshToken: refresh, TokenType: "Bearer",
		ExpiresIn: int64(s.tokenTTL / time.Second), Expiration: exp.Unix(), Scope: "ibm openid",
	})
}

func (s *Server) knownSubject(sub string) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, in := range s.st.Instances {
		if contains(in.Subjects, sub) {
			return true
		}
	}
	return false
}
