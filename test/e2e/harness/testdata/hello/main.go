// Command hello is the smallest main package, for the harness's own tests.
package main

func main() {}
