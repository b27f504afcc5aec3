
srready 0