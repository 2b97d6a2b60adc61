// Declarations only; see cpp/gloo_decls/README.md in sevit-distill.
#pragma once
