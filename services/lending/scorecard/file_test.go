package scorecard_test

import "os"

func scorecardFile() ([]byte, error) { return os.ReadFile("v1.yaml") }
