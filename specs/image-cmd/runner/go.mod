module orun.invalid/imagecmd

go 1.19
