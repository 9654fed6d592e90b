//! The 2D command set against guest memory: what Linux's driver does for its
//! framebuffer, and the error answers for what a broken or hostile driver sends.

use std::sync::Arc;

use vm_memory::{Bytes, GuestAddress};

use super::protocol::encode::{attach, hdr, transfer, words};
use super::protocol::{cmd, resp, HDR_SIZE};
use super::screen::GpuScreen;
use super::state::{GpuState, MAX_HOST_MEMORY};
use super::*;
use crate::display::{Image, Rect, ScreenSource};
use crate::virtio::queue_util::testing::{add_chain, memory, queue, used, CountingInterrupt};

/// The response type of executing `req`.
fn run(g: &mut GpuState, mem: &GuestMem, req: &[u8]) -> u32 {
    let r = g.execute(mem, req);
    u32::from_le_bytes(r[0..4].try_into().unwrap())
}

/// A 64×32 B8G8R8X8 resource 1 backed by two pieces of guest memory at 1 MiB and
/// 2 MiB (split mid-row), filled so that pixel (x, y) is 0x00YYXX80... as bytes.
fn framebuffer(g: &mut GpuState, mem: &GuestMem) {
    assert_eq!(
        run(g, mem, &words(cmd::RESOURCE_CREATE_2D, &[1, 2, 64, 32])),
        resp::OK_NODATA
    );
    let size = 64 * 32 * 4;
    let mut px = vec![0u8; size];
    for y in 0..32usize {
        for x in 0..64usize {
            // B, G, R, X.
            px[(y * 64 + x) * 4..][..4].copy_from_slice(&[0x80, x as u8, y as u8, 0xff]);
        }
    }
    let split = 1000;
    mem.write_slice(&px[..split], GuestAddress(0x10_0000))
        .unwrap();
    mem.write_slice(&px[split..], GuestAddress(0x20_0000))
        .unwrap();
    let a = attach(
        1,
        &[
            (0x10_0000, split as u32),
            (0x20_0000, (size - split) as u32),
        ],
    );
    assert_eq!(run(g, mem, &a), resp::OK_NODATA);
}

fn pixel(x: u32, y: u32) -> u32 {
    y << 16 | x << 8 | 0x80
}

#[test]
fn linux_style_framebuffer_reaches_the_console_with_exact_damage() {
    let mem = memory();
    let gpu: SharedGpu = Arc::new(Mutex::new(GpuState::new((1024, 768))));
    let mut screen = GpuScreen::new(gpu.clone(), None);
    let mut image = Arc::new(Image::black(640, 480));
    assert!(
        screen.refresh(&mut image).is_empty(),
        "no scanout: nothing drawn"
    );
    {
        let mut g = lock(&gpu);
        framebuffer(&mut g, &mem);
        assert_eq!(
            run(&mut g, &mem, &transfer([0, 0, 64, 32], 0, 1)),
            resp::OK_NODATA
        );
        assert_eq!(
            run(
                &mut g,
                &mem,
                &words(cmd::SET_SCANOUT, &[0, 0, 64, 32, 0, 1])
            ),
            resp::OK_NODATA
        );
    }
    // The scanout appears whole.
    let d = screen.refresh(&mut image);
    assert_eq!(
        d,
        vec![Rect {
            x: 0,
            y: 0,
            w: 64,
            h: 32
        }]
    );
    assert_eq!((image.width, image.height), (64, 32));
    for (x, y) in [(0, 0), (63, 0), (10, 20), (63, 31)] {
        assert_eq!(
            image.pixels[(y * 64 + x) as usize],
            pixel(x, y),
            "({x}, {y})"
        );
    }
    // Idle: nothing to do.
    assert!(screen.refresh(&mut image).is_empty());
    // The guest changes a pixel, transfers a sub-rectangle (offset = its first byte
    // in the backing) and flushes it: exactly that rectangle is damaged.
    mem.write_slice(
        &[0, 0, 0xff, 0],
        GuestAddress(0x20_0000 + (5 * 64 + 7) * 4 - 1000),
    )
    .unwrap();
    {
        let mut g = lock(&gpu);
        let off = (5 * 64 + 6) * 4;
        assert_eq!(
            run(&mut g, &mem, &transfer([6, 5, 4, 2], off, 1)),
            resp::OK_NODATA
        );
        // Nothing shows before the flush.
        drop(g);
        assert!(screen.refresh(&mut image).is_empty());
        let mut g = lock(&gpu);
        assert_eq!(
            run(
                &mut g,
                &mem,
                &words(cmd::RESOURCE_FLUSH, &[6, 5, 4, 2, 1, 0])
            ),
            resp::OK_NODATA
        );
    }
    let before = image.clone();
    assert_eq!(
        screen.refresh(&mut image),
        vec![Rect {
            x: 6,
            y: 5,
            w: 4,
            h: 2
        }]
    );
    assert_eq!(image.pixels[5 * 64 + 7], 0xff0000);
    assert_eq!(
        before.pixels[5 * 64 + 7],
        pixel(7, 5),
        "old images are not changed"
    );
    // Unref of the scanout resource takes the scanout down; the console goes black.
    assert_eq!(
        run(&mut lock(&gpu), &mem, &words(cmd::RESOURCE_UNREF, &[1, 0])),
        resp::OK_NODATA
    );
    assert_eq!(lock(&gpu).host_memory(), 0);
    assert_eq!(screen.refresh(&mut image).len(), 1);
    assert_eq!((image.width, image.height), (640, 480));
}

#[test]
fn scanout_of_a_sub_rectangle_and_other_formats() {
    let mem = memory();
    let mut g = GpuState::new((800, 600));
    framebuffer(&mut g, &mem);
    run(&mut g, &mem, &transfer([0, 0, 64, 32], 0, 1));
    assert_eq!(
        run(
            &mut g,
            &mem,
            &words(cmd::SET_SCANOUT, &[8, 4, 32, 16, 0, 1])
        ),
        resp::OK_NODATA
    );
    let mut image = Arc::new(Image::black(1, 1));
    g.render(&mut image, true, 0);
    assert_eq!((image.width, image.height), (32, 16));
    assert_eq!(image.pixels[0], pixel(8, 4));
    // A flush partly outside the scanout is clipped to it.
    run(
        &mut g,
        &mem,
        &words(cmd::RESOURCE_FLUSH, &[0, 0, 10, 6, 1, 0]),
    );
    let generation = g.generation;
    assert_eq!(
        g.render(&mut image, false, generation),
        vec![Rect {
            x: 0,
            y: 0,
            w: 2,
            h: 2
        }]
    );
    // R8G8B8X8 (134): the same bytes read as R=0x80, G=x, B=y.
    assert_eq!(
        run(
            &mut g,
            &mem,
            &words(cmd::RESOURCE_CREATE_2D, &[2, 134, 64, 32])
        ),
        resp::OK_NODATA
    );
    let a = attach(2, &[(0x10_0000, 1000), (0x20_0000, 64 * 32 * 4 - 1000)]);
    run(&mut g, &mem, &a);
    run(&mut g, &mem, &transfer([0, 0, 64, 32], 0, 2));
    run(
        &mut g,
        &mem,
        &words(cmd::SET_SCANOUT, &[0, 0, 64, 32, 0, 2]),
    );
    g.render(&mut image, true, 0);
    assert_eq!(image.pixels[3 * 64 + 9], 0x80 << 16 | 9 << 8 | 3);
}

#[test]
fn display_info_and_edid() {
    let mem = memory();
    let mut g = GpuState::new((1280, 800));
    let r = g.execute(&mem, &hdr(cmd::GET_DISPLAY_INFO, Some(5)));
    assert_eq!(r.len(), HDR_SIZE + 16 * 24);
    let w = |at: usize| u32::from_le_bytes(r[at..at + 4].try_into().unwrap());
    assert_eq!(w(0), resp::OK_DISPLAY_INFO);
    assert_eq!(
        u64::from_le_bytes(r[8..16].try_into().unwrap()),
        5,
        "fence echoed"
    );
    assert_eq!(
        (w(32), w(36), w(40)),
        (1280, 800, 1),
        "scanout 0 enabled at 1280x800"
    );
    assert_eq!(w(HDR_SIZE + 24 + 16), 0, "scanout 1 disabled");
    let r = g.execute(&mem, &words(cmd::GET_EDID, &[0, 0]));
    assert_eq!(r.len(), HDR_SIZE + 8 + 1024);
    assert_eq!(
        u32::from_le_bytes(r[0..4].try_into().unwrap()),
        resp::OK_EDID
    );
    assert_eq!(u32::from_le_bytes(r[24..28].try_into().unwrap()), 128);
    assert_eq!(&r[32..40], &[0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0]);
    assert_eq!(
        run(&mut g, &mem, &words(cmd::GET_EDID, &[1, 0])),
        resp::ERR_INVALID_PARAMETER
    );
}

#[test]
fn bad_ids_formats_and_rectangles_get_their_errors() {
    let mem = memory();
    let mut g = GpuState::new((1024, 768));
    let create = |g: &mut GpuState, id, fmt, w, h| {
        run(g, &mem, &words(cmd::RESOURCE_CREATE_2D, &[id, fmt, w, h]))
    };
    assert_eq!(create(&mut g, 0, 2, 64, 64), resp::ERR_INVALID_RESOURCE_ID);
    assert_eq!(create(&mut g, 1, 999, 64, 64), resp::ERR_INVALID_PARAMETER);
    assert_eq!(create(&mut g, 1, 2, 0, 64), resp::ERR_INVALID_PARAMETER);
    assert_eq!(
        create(&mut g, 1, 2, 100_000, 1),
        resp::ERR_INVALID_PARAMETER
    );
    assert_eq!(create(&mut g, 1, 2, 64, 64), resp::OK_NODATA);
    assert_eq!(
        create(&mut g, 1, 2, 64, 64),
        resp::ERR_INVALID_RESOURCE_ID,
        "id taken"
    );
    for req in [
        words(cmd::RESOURCE_UNREF, &[9, 0]),
        words(cmd::RESOURCE_FLUSH, &[0, 0, 1, 1, 9, 0]),
        words(cmd::SET_SCANOUT, &[0, 0, 64, 64, 0, 9]),
        words(cmd::RESOURCE_DETACH_BACKING, &[9, 0]),
        transfer([0, 0, 1, 1], 0, 9),
        attach(9, &[(0, 4096)]),
    ] {
        assert_eq!(
            run(&mut g, &mem, &req),
            resp::ERR_INVALID_RESOURCE_ID,
            "{req:?}"
        );
    }
    // Rectangles outside the resource (and overflowing ones).
    assert_eq!(
        run(
            &mut g,
            &mem,
            &words(cmd::SET_SCANOUT, &[8, 0, 64, 64, 0, 1])
        ),
        resp::ERR_INVALID_PARAMETER
    );
    assert_eq!(
        run(
            &mut g,
            &mem,
            &words(cmd::SET_SCANOUT, &[0, 0, 64, 64, 1, 1])
        ),
        resp::ERR_INVALID_SCANOUT_ID
    );
    assert_eq!(
        run(
            &mut g,
            &mem,
            &words(cmd::RESOURCE_FLUSH, &[u32::MAX, 0, 2, 1, 1, 0])
        ),
        resp::ERR_INVALID_PARAMETER
    );
    // Transfer without backing, then with a backing too small for the rectangle.
    assert_eq!(
        run(&mut g, &mem, &transfer([0, 0, 64, 64], 0, 1)),
        resp::ERR_UNSPEC
    );
    assert_eq!(
        run(&mut g, &mem, &attach(1, &[(0x10_0000, 4096)])),
        resp::OK_NODATA
    );
    assert_eq!(
        run(&mut g, &mem, &attach(1, &[(0x10_0000, 4096)])),
        resp::ERR_UNSPEC,
        "attached twice"
    );
    assert_eq!(
        run(&mut g, &mem, &transfer([0, 0, 64, 64], 0, 1)),
        resp::ERR_INVALID_PARAMETER
    );
    assert_eq!(
        run(&mut g, &mem, &transfer([0, 0, 64, 4], 0, 1)),
        resp::OK_NODATA
    );
    assert_eq!(
        run(&mut g, &mem, &words(cmd::RESOURCE_DETACH_BACKING, &[1, 0])),
        resp::OK_NODATA
    );
    // Backing outside guest memory (16 MiB here) is refused.
    assert_eq!(
        run(&mut g, &mem, &attach(1, &[(15 << 20, 2 << 20)])),
        resp::ERR_UNSPEC
    );
    // Unknown commands and short requests.
    assert_eq!(run(&mut g, &mem, &hdr(0x0204, None)), resp::ERR_UNSPEC);
    assert_eq!(run(&mut g, &mem, &[1, 2, 3]), resp::ERR_UNSPEC);
}

#[test]
fn resource_memory_is_bounded() {
    let mem = memory();
    let mut g = GpuState::new((1024, 768));
    // 16384×4096×4 = 256 MiB: the whole budget, then nothing more fits.
    let big = words(cmd::RESOURCE_CREATE_2D, &[1, 2, 16384, 4096]);
    assert_eq!(run(&mut g, &mem, &big), resp::OK_NODATA);
    assert_eq!(g.host_memory(), MAX_HOST_MEMORY);
    assert_eq!(
        run(
            &mut g,
            &mem,
            &words(cmd::RESOURCE_CREATE_2D, &[2, 2, 16, 16])
        ),
        resp::ERR_OUT_OF_MEMORY
    );
    run(&mut g, &mem, &words(cmd::RESOURCE_UNREF, &[1, 0]));
    assert_eq!(
        run(
            &mut g,
            &mem,
            &words(cmd::RESOURCE_CREATE_2D, &[2, 2, 16, 16])
        ),
        resp::OK_NODATA
    );
    g.reset();
    assert_eq!(g.host_memory(), 0);
}

#[test]
fn requests_and_responses_travel_through_the_queue() {
    let mem = memory();
    let (mock, mut aq) = queue(&mem, 0, 0);
    let req = words(cmd::RESOURCE_CREATE_2D, &[3, 2, 32, 32]);
    // The request split over two readable descriptors, the response buffer after.
    mem.write_slice(&req[..10], GuestAddress(0x30_0000))
        .unwrap();
    mem.write_slice(&req[10..], GuestAddress(0x30_1000))
        .unwrap();
    add_chain(
        &mock,
        0,
        &[
            (0x30_0000, 10, false),
            (0x30_1000, (req.len() - 10) as u32, false),
            (0x30_2000, 24, true),
        ],
    );
    let gpu: SharedGpu = Arc::new(Mutex::new(GpuState::new((1024, 768))));
    let intr = CountingInterrupt::default();
    drain(&mut aq, &mem, &intr, |c| process(&gpu, &mem, c));
    assert_eq!(used(&mem, &mock, 0), (0, 24));
    let t: u32 = mem.read_obj(GuestAddress(0x30_2000)).unwrap();
    assert_eq!(t, resp::OK_NODATA);
    assert_eq!(lock(&gpu).host_memory(), 32 * 32 * 4);
}

#[test]
fn config_offers_one_scanout_and_edid() {
    let d = VirtioGpu::new("video0", (1024, 768));
    let mut b = [0u8; 4];
    d.read_config(8, &mut b);
    assert_eq!(u32::from_le_bytes(b), 1);
    assert_eq!(d.features() & VIRTIO_GPU_F_EDID, VIRTIO_GPU_F_EDID);
    assert_eq!(d.queue_max_sizes().len(), 2);
}
