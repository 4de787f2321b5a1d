module lobster.dev/lobster

go 1.19
