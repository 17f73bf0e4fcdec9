//go:build !linux

package broker

const helperEnv = "TUPLE_BROKER_TEST_HELPER"

func helperMain(mode string, args []string) int { return 2 }

func removeBins() {}
