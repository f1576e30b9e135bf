module example.com/orunsample

go 1.19
