"""Reader + reference forward pass for M. D. McDonnell's published 1-bit-per-weight
Wide ResNet 20-10 models (ICLR 2018, arXiv:1802.08530), both storage layouts:

  * MATLAB / MatConvNet:  TrainedWideResNet20-10_CIFAR{10,100}_1-bit-per-weight-4MB.mat
  * tensorflow.keras:     CIFAR{10,100}_allparams.mat

load_mcdonnell(path) -> desc   (layout-neutral description, PyTorch weight layout)
forward(desc, images_uint8_nhwc) -> logits (N, num_classes) float32 numpy

Conventions (all verified on 500 real test images, see FINDINGS.md):
  input      raw 0..255 pixels as float, NHWC, RGB, image rows = H (no transpose),
             no mean subtraction / scaling other than the input BN.
  input BN   affine BN with learned gamma/beta and stored moments (3 channels).
             MATLAB: followed by ReLU (a no-op in practice: all outputs > 0);
             Keras:  no ReLU.
  conv k     weight = scale * (2*bit - 1), bit True -> +1; scale = sqrt(2/(kh*kw*cin))
             (also the first conv and the 1x1 head conv); cross-correlation (no flip).
  BN         y = gamma*(x-mean)/sqrt(var+eps)+beta.  MATLAB stores sigma=sqrt(var+1e-5)
             directly -> var = sigma^2, eps = 0.  Keras: var, eps = 1e-5.
  block      pre-activation: h = conv(relu(BN(r))), h = conv(relu(BN(h))), r = r + h
  downsample stride-2 first conv of stages 2/3; shortcut = avgpool3x3 s2 (padding
             excluded from divisor) then concat zero channels AFTER the pooled ones.
             MATLAB pads 1 on every side; Keras 'same' pads 0 before / 1 after
             (both for the stride-2 conv and for the pool).
  head       conv(1x1, relu(BN19(r))) -> BN20 (no affine, no relu) -> global avg pool.
"""
import numpy as np

# ----------------------------------------------------------------------------------
# file detection
# ----------------------------------------------------------------------------------


def mat_version(path):
    """'v5' (MATLAB 5.0 / 7 / 7.2 level-5 MAT-file) or 'v7.3' (HDF5) or 'unknown'."""
    with open(path, 'rb') as f:
        head = f.read(128)
        f.seek(512)
        h5sig = f.read(8)
    if h5sig == b'\x89HDF\r\n\x1a\n':
        return 'v7.3'
    if head[:10] == b'MATLAB 5.0' or (len(head) == 128 and head[124:128] in (b'\x00\x01IM', b'\x01\x00MI')):
        return 'v5'
    return 'unknown'


def detect_layout(names):
    names = set(names)
    if {'BinaryWeights', 'Moments', 'BNG', 'BNB', 'LayerWeights'} <= names:
        return 'matlab'
    if any(n == 'conv2d' or n.startswith('conv2d_') for n in names) and \
       any(n.startswith('batch_normalization') for n in names):
        return 'keras'
    raise ValueError('not a McDonnell 1-bit WRN file: %s' % sorted(names)[:10])


def _suffix_num(name, base):
    # 'conv2d' -> 0, 'conv2d_17' -> 17 ; 'batch_normalization_v1_84' -> 84
    rest = name[len(base):]
    return int(rest[1:]) if rest.startswith('_') and rest[1:].isdigit() else (0 if rest == '' else None)


# ----------------------------------------------------------------------------------
# loader
# ----------------------------------------------------------------------------------


def _pad_same(k, stride, size):
    """TF/Keras 'same' padding (before, after) for an input extent `size`."""
    out = -(-size // stride)
    total = max((out - 1) * stride + k - size, 0)
    return (total // 2, total - total // 2)


def load_mcdonnell(path):
    import scipy.io as sio
    ver = mat_version(path)
    if ver == 'v7.3':
        raise NotImplementedError('v7.3 (HDF5) MAT file: the published models are all v5; '
                                  'read with h5py (cells are object references) if ever needed')
    names = [n for n, _, _ in sio.whosmat(path)]
    layout = detect_layout(names)
    m = sio.loadmat(path)
    convs, bns = [], []
    if layout == 'matlab':
        BW = m['BinaryWeights'].ravel()           # 1x20 cell of uint8 (kh,kw,cin,cout)
        LW = m['LayerWeights'].ravel().astype(np.float64)   # 20 scales, = sqrt(2/fan_in)
        stride = m['Stride'].ravel().astype(int)
        pad = m['Padding'].ravel().astype(int)
        G, B, M = m['BNG'].ravel(), m['BNB'].ravel(), m['Moments'].ravel()   # 21 cells each
        for i, w in enumerate(BW):
            w = np.asarray(w)                      # MatConvNet (H, W, Cin, Cout)
            sign = np.ascontiguousarray(w.transpose(3, 2, 0, 1) != 0)   # (out,in,kh,kw)
            p = int(pad[i])
            convs.append(dict(name='conv%d' % i, sign=sign, scale=float(LW[i]),
                              stride=int(stride[i]), padding=(p, p, p, p)))
        for i in range(len(M)):
            mo = np.asarray(M[i], dtype=np.float64)          # (C,2): [mean, sigma]
            bns.append(dict(name='bn%d' % i, mean=mo[:, 0], var=mo[:, 1] ** 2, eps=0.0,
                            gamma=np.asarray(G[i], np.float64).ravel(),
                            beta=np.asarray(B[i], np.float64).ravel()))
        input_relu = True
        ds_pad = (1, 1, 1, 1)
        num_classes = int(m['NumChannels'].ravel()[-1])
    else:
        cn = sorted([n for n in names if _suffix_num(n, 'conv2d') is not None and n.startswith('conv2d')],
                    key=lambda n: _suffix_num(n, 'conv2d'))
        bn_base = 'batch_normalization_v1' if any(n.startswith('batch_normalization_v1') for n in names) \
            else 'batch_normalization'
        bnn = sorted([n for n in names if n.startswith('batch_normalization')],
                     key=lambda n: _suffix_num(n, bn_base) if _suffix_num(n, bn_base) is not None else 0)
        assert len(cn) == 20 and len(bnn) == 21, (len(cn), len(bnn))
        size = 32
        for i, n in enumerate(cn):
            w = np.asarray(m[n])[0]                # (1,kh,kw,cin,cout) logical -> (kh,kw,cin,cout)
            kh, kw, cin, cout = w.shape
            s = 2 if (i in (7, 13)) else 1         # first conv of stage 2 and 3
            if kh == 1:
                p = (0, 0, 0, 0)
            else:
                ph = _pad_same(kh, s, size)
                p = (ph[0], ph[1], ph[0], ph[1])
            size = -(-size // s)
            convs.append(dict(name=n, sign=np.ascontiguousarray(w.transpose(3, 2, 0, 1) != 0),
                              scale=float(np.sqrt(2.0 / (kh * kw * cin))), stride=s, padding=p))
        for i, n in enumerate(bnn):
            a = np.asarray(m[n], np.float64)
            if a.shape[0] == 4:                     # center=True, scale=True
                g, b, mu, var = a
            else:                                   # center=False, scale=False
                mu, var = a
                g, b = np.ones_like(mu), np.zeros_like(mu)
            bns.append(dict(name=n, mean=mu, var=var, gamma=g, beta=b, eps=1e-5))
        input_relu = False
        ds_pad = (0, 1, 0, 1)
        num_classes = convs[-1]['sign'].shape[0]
    # sanity on topology
    assert len(convs) == 20 and len(bns) == 21
    return dict(
        source=layout, mat_version=ver, num_classes=num_classes,
        input=dict(layout='NHWC', channel_order='RGB', pixel_scale=1.0,   # raw 0..255
                   mean_subtract=None, bn=bns[0], relu_after_bn=input_relu),
        convs=convs,            # conv0 stem, conv1..18 = 9 blocks x 2, conv19 = 1x1 head
        bns=bns,                # bns[k] precedes convs[k]; bns[20] = output BN
        downsample=dict(kind='avgpool3x3_s2_zero_concat', padding=ds_pad,
                        count_include_pad=False, zeros='after'),
        head=dict(kind='bn_relu_conv1x1_bn_gap'),
        blocks_per_stage=3, downsample_blocks=(3, 6),
    )


# ----------------------------------------------------------------------------------
# forward
# ----------------------------------------------------------------------------------


def _bn(x, bn, torch):
    C = x.shape[1]
    g = torch.tensor(bn['gamma'] / np.sqrt(bn['var'] + bn['eps']), dtype=torch.float32).view(1, C, 1, 1)
    b = torch.tensor(bn['beta'] - bn['mean'] * bn['gamma'] / np.sqrt(bn['var'] + bn['eps']),
                     dtype=torch.float32).view(1, C, 1, 1)
    return x * g + b


def _conv(x, c, torch, F):
    w = torch.from_numpy(np.where(c['sign'], 1.0, -1.0).astype(np.float32) * np.float32(c['scale']))
    t, b, l, r = c['padding']
    if t == b and l == r:
        return F.conv2d(x, w, stride=c['stride'], padding=(t, l))
    return F.conv2d(F.pad(x, (l, r, t, b)), w, stride=c['stride'])


def _downsample(r, ds, torch, F):
    t, b, l, rr = ds['padding']
    if t == b and l == rr and t <= 1:
        p = F.avg_pool2d(r, 3, 2, padding=(t, l), count_include_pad=ds['count_include_pad'])
    else:   # asymmetric: pool sum over zero-padded input, divide by count of real pixels
        xs = F.pad(r, (l, rr, t, b))
        s = F.avg_pool2d(xs, 3, 2, divisor_override=1)
        if ds['count_include_pad']:
            p = s / 9.0
        else:
            ones = F.pad(torch.ones_like(r[:1, :1]), (l, rr, t, b))
            p = s / F.avg_pool2d(ones, 3, 2, divisor_override=1)
    z = torch.zeros_like(p)
    return torch.cat([p, z] if ds['zeros'] == 'after' else [z, p], 1)


def forward(desc, images_uint8_nhwc, batch=100):
    import torch
    import torch.nn.functional as F
    imgs = np.asarray(images_uint8_nhwc)
    out = []
    with torch.no_grad():
        for s in range(0, len(imgs), batch):
            x = torch.from_numpy(imgs[s:s + batch].astype(np.float32) * desc['input']['pixel_scale'])
            x = x.permute(0, 3, 1, 2).contiguous()          # NCHW
            C, B = desc['convs'], desc['bns']
            x = _bn(x, desc['input']['bn'], torch)
            if desc['input']['relu_after_bn']:
                x = F.relu(x)
            r = _conv(x, C[0], torch, F)
            k = 1
            for blk in range(3 * desc['blocks_per_stage']):
                h = _conv(F.relu(_bn(r, B[k], torch)), C[k], torch, F)
                h = _conv(F.relu(_bn(h, B[k + 1], torch)), C[k + 1], torch, F)
                if blk in desc['downsample_blocks']:
                    r = _downsample(r, desc['downsample'], torch, F)
                r = r + h
                k += 2
            o = _conv(F.relu(_bn(r, B[k], torch)), C[k], torch, F)
            o = _bn(o, B[k + 1], torch)
            out.append(o.mean(dim=(2, 3)).numpy())
    return np.concatenate(out, 0)


# ----------------------------------------------------------------------------------
# CIFAR python-pickle loader (for tests)
# ----------------------------------------------------------------------------------


def load_cifar_pickle(path):
    import pickle
    with open(path, 'rb') as f:
        d = pickle.load(f, encoding='latin1')
    x = d['data'].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)    # NHWC, RGB, rows = H
    y = np.array(d['labels'] if 'labels' in d else d['fine_labels'])
    return np.ascontiguousarray(x), y


if __name__ == '__main__':
    import sys
    import time
    R = '/work/shared/realdata/'
    M = R + 'mcdonnell-1-bit-per-weight/TrainedModels/'
    data = {10: load_cifar_pickle(R + 'cifar10-partial/cifar-10-batches-py/test_batch'),
            100: load_cifar_pickle(R + 'cifar100-partial/cifar-100-python/test')}
    for p, ds in [('Matlab/TrainedWideResNet20-10_CIFAR10_1-bit-per-weight-4MB.mat', 10),
                  ('Matlab/TrainedWideResNet20-10_CIFAR100_1-bit-per-weight-4MB.mat', 100),
                  ('Tensorflow.keras/CIFAR10_allparams.mat', 10),
                  ('Tensorflow.keras/CIFAR100_allparams.mat', 100)]:
        t = time.time()
        d = load_mcdonnell(M + p)
        x, y = data[ds]
        lg = forward(d, x)
        print('%-62s %s acc %.1f%%  (%.0fs)' % (p, d['source'], 100 * (lg.argmax(1) == y).mean(), time.time() - t))
        sys.stdout.flush()
