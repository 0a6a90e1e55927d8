package push

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"io"
	"net/http"
	"strings"

	"google.golang.org/genproto/googleapis/rpc/code"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	pushv1 "github.com/gatewire/gatewire/proto/gatewire/push/v1"
)

// maxHTTPBody bounds an HTTP/JSON request body.
const maxHTTPBody = 4 << 20

// HTTPHandler serves every Push API call as HTTP/JSON for backends that do
// not speak gRPC: POST /v1/<Method> (e.g. /v1/SendToUid) with the request
// message as JSON in the protobuf JSON mapping (bytes fields as base64) and
// the header "Authorization: Bearer <token>". The answer is the response
// message as JSON, or {"code":"NOT_FOUND","message":"..."} with the HTTP
// status that matches the gRPC code. Routes come from the service
// descriptor, so every gRPC method has one.
func HTTPHandler(s *Server, token string) http.Handler {
	mux := http.NewServeMux()
	want := []byte("Bearer " + token)
	for _, md := range pushv1.PushService_ServiceDesc.Methods {
		mux.HandleFunc("POST /v1/"+md.MethodName, func(w http.ResponseWriter, r *http.Request) {
			if token == "" || subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), want) != 1 {
				writeError(w, status.Error(codes.Unauthenticated, "missing or wrong bearer token"))
				return
			}
			body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxHTTPBody))
			if err != nil {
				writeError(w, status.Error(codes.InvalidArgument, "request body: "+err.Error()))
				return
			}
			if len(strings.TrimSpace(string(body))) == 0 {
				body = []byte("{}")
			}
			decode := func(v any) error {
				if err := protojson.Unmarshal(body, v.(proto.Message)); err != nil {
					return status.Error(codes.InvalidArgument, "request JSON: "+err.Error())
				}
				return nil
			}
			resp, err := md.Handler(s, r.Context(), decode, nil)
			if err != nil {
				writeError(w, err)
				return
			}
			out, err := protojson.MarshalOptions{EmitUnpopulated: true}.Marshal(resp.(proto.Message))
			if err != nil {
				writeError(w, status.Error(codes.Internal, "encode response"))
				return
			}
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write(out)
		})
	}
	return mux
}

// writeError answers err as {"code":"NOT_FOUND","message":"..."}, the code
// spelled as google.rpc.Code spells it.
func writeError(w http.ResponseWriter, err error) {
	st := status.Convert(err)
	if st.Code() == codes.Unknown && (err == context.Canceled || err == context.DeadlineExceeded) {
		st = status.FromContextError(err)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(httpStatus(st.Code()))
	_ = json.NewEncoder(w).Encode(map[string]string{"code": code.Code(st.Code()).String(), "message": st.Message()})
}

// httpStatus maps a gRPC code to an HTTP status as grpc-gateway does.
func httpStatus(c codes.Code) int {
	switch c {
	case codes.OK:
		return http.StatusOK
	case codes.InvalidArgument, codes.OutOfRange:
		return http.StatusBadRequest
	case codes.FailedPrecondition:
		return http.StatusConflict
	case codes.Unauthenticated:
		return http.StatusUnauthorized
	case codes.PermissionDenied:
		return http.StatusForbidden
	case codes.NotFound:
		return http.StatusNotFound
	case codes.AlreadyExists, codes.Aborted:
		return http.StatusConflict
	case codes.ResourceExhausted:
		return http.StatusTooManyRequests
	case codes.Canceled:
		return 499
	case codes.Unavailable:
		return http.StatusServiceUnavailable
	case codes.DeadlineExceeded:
		return http.StatusGatewayTimeout
	case codes.Unimplemented:
		return http.StatusNotImplemented
	default:
		return http.StatusInternalServerError
	}
}
