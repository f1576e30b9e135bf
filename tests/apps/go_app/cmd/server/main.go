// go spec test app built with --carg MAIN_PACKAGE=./cmd/server.
package main

import "example.com/orunsample/internal/info"

func main() { info.Serve("cmd/server") }
