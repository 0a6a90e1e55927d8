package gateway

// ClientFrame is clientFrame, for the external tests.
var ClientFrame = clientFrame
