//! Image bytes (DICOM, PNG, JPEG, anything) -> the image loader, with and without a `.dcm`
//! extension (the format is detected from the content), and the DICOM decoder directly.
#![no_main]
mod common;

use libfuzzer_sys::fuzz_target;
use sevit_data::dicom::decode_dicom;
use sevit_data::load::load_gray_native;

fuzz_target!(|data: &[u8]| {
    let dir = common::scratch("dicom_loader");
    for name in ["image", "image.dcm"] {
        let path = dir.join(name);
        common::write(&path, data);
        let _ = load_gray_native(&path);
    }
    let _ = decode_dicom(&dir.join("image"));
});
