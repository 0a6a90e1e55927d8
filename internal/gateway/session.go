package gateway

import (
	"encoding/json"
	"errors"
)

// maxSessionBytes bounds one connection's session.
const maxSessionBytes = 64 << 10

// errBadSession reports a session or patch that is not a JSON object, or
// one that grows too large.
var errBadSession = errors.New("session must be a JSON object of at most 64 KiB")

// checkSession returns the canonical form of a session: a JSON object, or
// nil for an empty session ("" or "{}" or null).
func checkSession(b []byte) ([]byte, error) {
	if len(b) == 0 {
		return nil, nil
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(b, &obj); err != nil || len(b) > maxSessionBytes {
		return nil, errBadSession
	}
	if len(obj) == 0 {
		return nil, nil
	}
	return json.Marshal(obj)
}

// mergePatch applies an RFC 7396 JSON merge patch (an object) to a session:
// members set to null are removed, objects merge recursively, anything else
// replaces.
func mergePatch(doc, patch []byte) ([]byte, error) {
	var p map[string]any
	if err := json.Unmarshal(patch, &p); err != nil || p == nil {
		return nil, errBadSession
	}
	d := map[string]any{}
	if len(doc) > 0 {
		if err := json.Unmarshal(doc, &d); err != nil {
			return nil, errBadSession
		}
	}
	mergeInto(d, p)
	if len(d) == 0 {
		return nil, nil
	}
	out, err := json.Marshal(d)
	if err != nil || len(out) > maxSessionBytes {
		return nil, errBadSession
	}
	return out, nil
}

func mergeInto(dst, patch map[string]any) {
	for k, v := range patch {
		switch pv := v.(type) {
		case nil:
			delete(dst, k)
		case map[string]any:
			sub, ok := dst[k].(map[string]any)
			if !ok {
				sub = map[string]any{}
			}
			mergeInto(sub, pv)
			dst[k] = sub
		default:
			dst[k] = v
		}
	}
}
