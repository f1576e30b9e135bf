// go spec test app (the default MAIN_PACKAGE "."): standard library only.
package main

import "example.com/orunsample/internal/info"

func main() { info.Serve("root") }
