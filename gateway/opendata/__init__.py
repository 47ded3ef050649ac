"""Open results (开放不出门): released results published by a data owner, served without sign-in."""
