module lobster.dev/examples

go 1.19

require lobster.dev/lobster v0.0.0

replace lobster.dev/lobster => ../../lobster-capi/go
