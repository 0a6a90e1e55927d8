package gateway

// ClientFrame is clientFrame, for the external tests.
var ClientFrame = clientFrame

// CloseConcurrency is closeConcurrency, for the external tests.
const CloseConcurrency = closeConcurrency
