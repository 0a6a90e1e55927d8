package push_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/gatewire/gatewire/internal/push"
	"github.com/gatewire/gatewire/internal/worker"
	pushv1 "github.com/gatewire/gatewire/proto/gatewire/push/v1"
)

const httpToken = "s3cret-token"

// newHTTP serves push.HTTPHandler over api with httpToken until the test
// ends and returns its base URL and a client.
func newHTTP(t *testing.T, api worker.API, token string) (string, *http.Client) {
	t.Helper()
	srv := httptest.NewServer(push.HTTPHandler(push.NewServer(api), token))
	t.Cleanup(srv.Close)
	return srv.URL, srv.Client()
}

// post sends body to path with the bearer token ("" sends no Authorization
// header) and returns the status and the body.
func post(t *testing.T, hc *http.Client, url, auth, body string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	return resp.StatusCode, out
}

// errorBody decodes an error answer: {"code":"...","message":"..."}.
func errorBody(t *testing.T, out []byte) (code, message string) {
	t.Helper()
	var e map[string]string
	if err := json.Unmarshal(out, &e); err != nil {
		t.Fatalf("error answer %s is not a JSON object of strings: %v", out, err)
	}
	return e["code"], e["message"]
}

// TestHTTPRoutesEveryMethod checks that every PushService method is served
// at POST /v1/<Method> and answers a JSON message, and that other methods
// and paths are refused.
func TestHTTPRoutesEveryMethod(t *testing.T) {
	api := &fakeAPI{}
	base, hc := newHTTP(t, api, httpToken)
	methods := pushv1.PushService_ServiceDesc.Methods
	if len(methods) < 20 {
		t.Fatalf("PushService has %d methods, want at least 20", len(methods))
	}
	for _, md := range methods {
		api.reset(nil)
		status, out := post(t, hc, base+"/v1/"+md.MethodName, "Bearer "+httpToken, `{}`)
		if status != http.StatusOK {
			t.Errorf("POST /v1/%s: status %d, body %s; want 200", md.MethodName, status, out)
			continue
		}
		var v map[string]any
		if err := json.Unmarshal(out, &v); err != nil {
			t.Errorf("POST /v1/%s: answer %s is not a JSON object: %v", md.MethodName, out, err)
		}
		if m, _ := api.last(); m == "" {
			t.Errorf("POST /v1/%s made no API call", md.MethodName)
		}
		// An empty body is the empty request.
		if status, out := post(t, hc, base+"/v1/"+md.MethodName, "Bearer "+httpToken, ``); status != http.StatusOK {
			t.Errorf("POST /v1/%s with an empty body: status %d, body %s; want 200", md.MethodName, status, out)
		}
	}
	// GET is not a route; neither is an unknown method.
	req, _ := http.NewRequest(http.MethodGet, base+"/v1/SendToUid", nil)
	req.Header.Set("Authorization", "Bearer "+httpToken)
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET /v1/SendToUid: status %d, want 405", resp.StatusCode)
	}
	if status, _ := post(t, hc, base+"/v1/NoSuchMethod", "Bearer "+httpToken, `{}`); status != http.StatusNotFound {
		t.Errorf("POST /v1/NoSuchMethod: status %d, want 404", status)
	}
}

// TestHTTPRequestAndResponse checks the protobuf JSON mapping both ways:
// bytes as base64, either field name style in, and the response message.
func TestHTTPRequestAndResponse(t *testing.T) {
	api := &fakeAPI{}
	api.reset(nil)
	base, hc := newHTTP(t, api, httpToken)
	auth := "Bearer " + httpToken
	data := []byte("hi \x00\xff")
	b64 := base64.StdEncoding.EncodeToString(data)

	for _, body := range []string{
		fmt.Sprintf(`{"uids":["alice","0"],"data":%q,"binary":true}`, b64),
	} {
		status, out := post(t, hc, base+"/v1/SendToUid", auth, body)
		if status != http.StatusOK {
			t.Fatalf("SendToUid: status %d, body %s", status, out)
		}
		var resp pushv1.SendToUidResponse
		if err := protojson.Unmarshal(out, &resp); err != nil || resp.GetDelivered() != fakeDelivered {
			t.Errorf("SendToUid answer %s (%v), want delivered %d", out, err, fakeDelivered)
		}
		method, args := api.last()
		if method != "SendToUID" || fmt.Sprint(args[0]) != "[alice 0]" || !bytes.Equal(args[1].([]byte), data) || args[2] != true {
			t.Errorf("SendToUid made %s%v, want SendToUID([alice 0], %q, true)", method, args, data)
		}
	}
	// proto field names and JSON names are both accepted.
	for _, body := range []string{
		fmt.Sprintf(`{"client_id":%q,"data":%q}`, cid1, b64),
		fmt.Sprintf(`{"clientId":%q,"data":%q}`, cid1, b64),
	} {
		if status, out := post(t, hc, base+"/v1/SendToClient", auth, body); status != http.StatusOK {
			t.Errorf("SendToClient %s: status %d, body %s", body, status, out)
		}
		method, args := api.last()
		if method != "SendToClient" || args[0] != cid1 || !bytes.Equal(args[1].([]byte), data) || args[2] != false {
			t.Errorf("SendToClient %s made %s%v", body, method, args)
		}
	}
	// A response with maps and nested messages.
	status, out := post(t, hc, base+"/v1/GetGroupMembers", auth, `{"groups":["g"]}`)
	var gm pushv1.GetGroupMembersResponse
	if err := protojson.Unmarshal(out, &gm); status != http.StatusOK || err != nil {
		t.Fatalf("GetGroupMembers: status %d, body %s, %v", status, out, err)
	}
	want := &pushv1.GetGroupMembersResponse{Groups: map[string]*pushv1.GroupMembers{"g": {ClientIds: []string{cid1}, Uids: []string{"alice"}}}}
	if !proto.Equal(&gm, want) {
		t.Errorf("GetGroupMembers answer %v, want %v", &gm, want)
	}
	// Unpopulated fields are present in answers.
	status, out = post(t, hc, base+"/v1/IsOnline", auth, fmt.Sprintf(`{"client_id":%q}`, cid2))
	if status != http.StatusOK || !bytes.Contains(out, []byte(`"online":true`)) {
		t.Errorf("IsOnline: status %d, body %s; want online true", status, out)
	}
	status, out = post(t, hc, base+"/v1/GetClientCount", auth, `{}`)
	if status != http.StatusOK || !bytes.Contains(out, []byte(`"incomplete":false`)) || !bytes.Contains(out, []byte(`"count":7`)) {
		t.Errorf("GetClientCount: status %d, body %s; want count 7 and incomplete false", status, out)
	}
}

// TestHTTPBadRequests checks that malformed requests are refused with 400
// INVALID_ARGUMENT before reaching the API.
func TestHTTPBadRequests(t *testing.T) {
	api := &fakeAPI{}
	base, hc := newHTTP(t, api, httpToken)
	for _, body := range []string{
		`{`,
		`not json`,
		`[]`,
		`{"uids":"alice"}`,    // a string for a repeated field
		`{"data":"%%%"}`,      // not base64
		`{"no_such_field":1}`, // unknown field
	} {
		api.reset(nil)
		status, out := post(t, hc, base+"/v1/SendToUid", "Bearer "+httpToken, body)
		shown := body
		if status != http.StatusBadRequest {
			t.Errorf("body %q: status %d, body %s; want 400", shown, status, out)
			continue
		}
		if code, msg := errorBody(t, out); code != "INVALID_ARGUMENT" || msg == "" {
			t.Errorf("body %q: answer %s, want code INVALID_ARGUMENT and a message", shown, out)
		}
		if m, _ := api.last(); m != "" {
			t.Errorf("body %q reached the API (%s)", shown, m)
		}
	}
}

// TestHTTPAuth checks that a missing or wrong bearer token is refused with
// 401 UNAUTHENTICATED before reaching the API, and that a handler without a
// token refuses every call.
func TestHTTPAuth(t *testing.T) {
	api := &fakeAPI{}
	base, hc := newHTTP(t, api, httpToken)
	for _, auth := range []string{"", "Bearer", "Bearer ", "Bearer wrong", httpToken, "bearer " + httpToken, "Basic " + httpToken, "Bearer " + httpToken + "x"} {
		api.reset(nil)
		status, out := post(t, hc, base+"/v1/GetClientCount", auth, `{}`)
		if status != http.StatusUnauthorized {
			t.Errorf("Authorization %q: status %d, body %s; want 401", auth, status, out)
			continue
		}
		if code, _ := errorBody(t, out); code != "UNAUTHENTICATED" {
			t.Errorf("Authorization %q: answer %s, want code UNAUTHENTICATED", auth, out)
		}
		if m, _ := api.last(); m != "" {
			t.Errorf("Authorization %q reached the API (%s)", auth, m)
		}
	}
	// Bad JSON without a token is still 401: authentication comes first.
	if status, _ := post(t, hc, base+"/v1/GetClientCount", "", `{`); status != http.StatusUnauthorized {
		t.Errorf("bad JSON without a token: status %d, want 401", status)
	}

	noToken, hc2 := newHTTP(t, api, "")
	for _, auth := range []string{"", "Bearer ", "Bearer x"} {
		if status, out := post(t, hc2, noToken+"/v1/GetClientCount", auth, `{}`); status != http.StatusUnauthorized {
			t.Errorf("handler without a token, Authorization %q: status %d, body %s; want 401", auth, status, out)
		}
	}
}

// TestHTTPErrorMapping checks that API errors become the HTTP status and
// the code of their gRPC status, and that an incomplete cluster-wide count
// is an answer, not an error.
func TestHTTPErrorMapping(t *testing.T) {
	api := &fakeAPI{}
	base, hc := newHTTP(t, api, httpToken)
	cases := []struct {
		err    error
		status int
		code   string
	}{
		{worker.ErrInvalidArgument, http.StatusBadRequest, "INVALID_ARGUMENT"},
		{fmt.Errorf("send: %w", worker.ErrNotFound), http.StatusNotFound, "NOT_FOUND"},
		{worker.ErrConflict, http.StatusConflict, "FAILED_PRECONDITION"},
		{worker.ErrUnavailable, http.StatusServiceUnavailable, "UNAVAILABLE"},
		{&worker.IncompleteError{Gateways: []string{"00000000000000a1"}}, http.StatusServiceUnavailable, "UNAVAILABLE"},
		{fmt.Errorf("ask: %w", context.DeadlineExceeded), http.StatusGatewayTimeout, "DEADLINE_EXCEEDED"},
		{errors.New("disk on fire"), http.StatusInternalServerError, "INTERNAL"},
	}
	for _, tc := range cases {
		api.reset(tc.err)
		status, out := post(t, hc, base+"/v1/SendToClient", "Bearer "+httpToken, fmt.Sprintf(`{"client_id":%q}`, cid1))
		code, msg := errorBody(t, out)
		if status != tc.status || code != tc.code || msg == "" {
			t.Errorf("API error %q: status %d, answer %s; want %d with code %s and a message", tc.err, status, out, tc.status, tc.code)
		}
		if strings.Contains(msg, "disk on fire") {
			t.Errorf("API error %q: the answer %s leaks the internal error", tc.err, out)
		}
	}

	// A partial count is 200 with incomplete set.
	api.reset(&worker.IncompleteError{Gateways: []string{"00000000000000a1"}})
	status, out := post(t, hc, base+"/v1/GetClientCount", "Bearer "+httpToken, `{}`)
	var resp pushv1.GetClientCountResponse
	if err := protojson.Unmarshal(out, &resp); status != http.StatusOK || err != nil || resp.GetCount() != 7 || !resp.GetIncomplete() {
		t.Errorf("GetClientCount with an incomplete result: status %d, body %s (%v); want 200, count 7, incomplete", status, out, err)
	}
	status, out = post(t, hc, base+"/v1/ListClients", "Bearer "+httpToken, `{}`)
	var list pushv1.ListClientsResponse
	if err := protojson.Unmarshal(out, &list); status != http.StatusOK || err != nil || len(list.GetClients()) != 1 || !list.GetIncomplete() {
		t.Errorf("ListClients with an incomplete result: status %d, body %s (%v); want 200, one client, incomplete", status, out, err)
	}
}
