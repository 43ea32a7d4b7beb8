module github.com/tani-platform/tani

go 1.26
