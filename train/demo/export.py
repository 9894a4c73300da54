"""Exports the trained demo model to the ONNX folder layout the engine loads (Optimum's
current layout: int64 input_ids, rank-0 float timestep, vae_encoder returning latent_parameters,
per-part config.json files).

    /usr/bin/python3 train/demo/export.py --work train/demo/out --out assets/models/demo
"""
import argparse
import json
import os
import shutil

import torch

import models

OPSET = 14


class UNetExport(torch.nn.Module):
    def __init__(self, unet):
        super().__init__()
        self.unet = unet

    def forward(self, sample, timestep, encoder_hidden_states):
        # Optimum's layout: one scalar timestep for the whole batch.
        t = timestep.reshape(1).expand(sample.shape[0])
        return self.unet(sample, t, encoder_hidden_states)


class EncoderExport(torch.nn.Module):
    def __init__(self, vae):
        super().__init__()
        self.encoder = vae.encoder

    def forward(self, sample):
        return self.encoder(sample)  # mean ‖ logvar on the channel axis: latent_parameters


class DecoderExport(torch.nn.Module):
    def __init__(self, vae):
        super().__init__()
        self.decoder = vae.decoder

    def forward(self, latent_sample):
        return self.decoder(latent_sample)


def write_json(path, value):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'w') as f:
        json.dump(value, f, indent=2)
        f.write('\n')


def export(module, args, path, inputs, outputs, axes):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    torch.onnx.export(module, args, path, input_names=inputs, output_names=outputs,
                      dynamic_axes=axes, opset_version=OPSET, do_constant_folding=True)


def load(work):
    tok_dir = os.path.join(work, 'tokenizer')
    vocab = json.load(open(os.path.join(tok_dir, 'vocab.json')))
    ck = torch.load(os.path.join(work, 'unet.pt'))
    text = models.TextEncoder(len(vocab))
    text.load_state_dict(ck['text'])
    unet = models.UNet()
    unet.load_state_dict(ck['unet'])
    vae = models.VAE()
    vae.load_state_dict(torch.load(os.path.join(work, 'vae.pt')))
    sf = json.load(open(os.path.join(work, 'vae_scaling.json')))['scaling_factor']
    for m in (text, unet, vae):
        m.eval()
    return text, unet, vae, sf, ck['step']


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--work', default='train/demo/out')
    ap.add_argument('--out', default='assets/models/demo')
    args = ap.parse_args()
    models.FAST_LINEAR = False
    text, unet, vae, sf, step = load(args.work)
    out = args.out
    for part in ('text_encoder', 'unet', 'vae_decoder', 'vae_encoder', 'tokenizer', 'scheduler'):
        shutil.rmtree(os.path.join(out, part), ignore_errors=True)
    shutil.copytree(os.path.join(args.work, 'tokenizer'), os.path.join(out, 'tokenizer'))

    ids = torch.zeros(1, models.SEQ, dtype=torch.long)
    export(text, (ids,), os.path.join(out, 'text_encoder', 'model.onnx'), ['input_ids'], ['last_hidden_state'],
           {'input_ids': {0: 'batch_size', 1: 'sequence_length'}, 'last_hidden_state': {0: 'batch_size', 1: 'sequence_length'}})
    sample = torch.zeros(2, models.LATENT_CHANNELS, 8, 8)
    cond = torch.zeros(2, models.SEQ, models.COND_DIM)
    export(UNetExport(unet), (sample, torch.tensor(500.0), cond), os.path.join(out, 'unet', 'model.onnx'),
           ['sample', 'timestep', 'encoder_hidden_states'], ['out_sample'],
           {'sample': {0: 'batch_size', 2: 'height', 3: 'width'},
            'encoder_hidden_states': {0: 'batch_size', 1: 'sequence_length'},
            'out_sample': {0: 'batch_size', 2: 'height', 3: 'width'}})
    export(DecoderExport(vae), (torch.zeros(1, 4, 8, 8),), os.path.join(out, 'vae_decoder', 'model.onnx'),
           ['latent_sample'], ['sample'],
           {'latent_sample': {0: 'batch_size', 2: 'latent_height', 3: 'latent_width'},
            'sample': {0: 'batch_size', 2: 'height', 3: 'width'}})
    export(EncoderExport(vae), (torch.zeros(1, 3, 64, 64),), os.path.join(out, 'vae_encoder', 'model.onnx'),
           ['sample'], ['latent_parameters'],
           {'sample': {0: 'batch_size', 2: 'height', 3: 'width'},
            'latent_parameters': {0: 'batch_size', 2: 'latent_height', 3: 'latent_width'}})

    part = ['onnxruntime', 'ORTModel']
    write_json(os.path.join(out, 'model_index.json'), {
        '_class_name': 'ORTStableDiffusionPipeline',
        '_diffusers_version': '0.27.2',
        'scheduler': ['diffusers', 'PNDMScheduler'],
        'text_encoder': part,
        'tokenizer': ['transformers', 'CLIPTokenizer'],
        'unet': part,
        'vae_decoder': part,
        'vae_encoder': part,
    })
    # SD 1.x's scheduler settings: the schedule the UNet was trained with.
    write_json(os.path.join(out, 'scheduler', 'scheduler_config.json'), {
        '_class_name': 'PNDMScheduler',
        '_diffusers_version': '0.27.2',
        'beta_start': 0.00085,
        'beta_end': 0.012,
        'beta_schedule': 'scaled_linear',
        'num_train_timesteps': 1000,
        'prediction_type': 'epsilon',
        'set_alpha_to_one': False,
        'skip_prk_steps': True,
        'steps_offset': 1,
        'clip_sample': False,
        'timestep_spacing': 'leading',
        'trained_betas': None,
    })
    write_json(os.path.join(out, 'text_encoder', 'config.json'), {
        'model_type': 'clip_text_model', 'hidden_size': models.COND_DIM, 'max_position_embeddings': models.SEQ,
        'vocab_size': text.tok.num_embeddings, 'num_hidden_layers': len(text.layers),
        'note': 'CLIP-like causal text encoder, 128 wide inside, last_hidden_state projected to 768',
    })
    write_json(os.path.join(out, 'unet', 'config.json'), {
        '_class_name': 'UNet2DConditionModel', 'sample_size': 8, 'in_channels': 4, 'out_channels': 4,
        'cross_attention_dim': models.COND_DIM, 'block_out_channels': [unet.c0, unet.d1.c2.out_channels],
        'trained_steps': step,
    })
    vae_config = {'_class_name': 'AutoencoderKL', 'latent_channels': 4, 'scaling_factor': sf, 'sample_size': 64,
                  'in_channels': 3, 'out_channels': 3, 'block_out_channels': [64, 64, 96, 96],
                  'note': 'block_out_channels only states the scale factor, 2^(4-1) = 8, as diffusers derives it; '
                          'the network is train/demo/models.py Encoder/Decoder, not AutoencoderKL'}
    write_json(os.path.join(out, 'vae_decoder', 'config.json'), vae_config)
    write_json(os.path.join(out, 'vae_encoder', 'config.json'), vae_config)
    print(f'exported to {out} (UNet step {step}, scaling_factor {sf})')


if __name__ == '__main__':
    main()
